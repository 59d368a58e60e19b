"""Following tasks: one batched poller, its schedule, pushed updates, the one delivery path."""

from .tracker import TaskTracker, TrackHandle
from .webhooks import WebhookReceiver

__all__ = ["TaskTracker", "TrackHandle", "WebhookReceiver"]
