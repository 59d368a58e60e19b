"""The bounded local HTTP server under the demo backend and the webhook receiver (not API)."""
