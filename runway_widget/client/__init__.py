"""The APIFRAME client: submit, fetch, wait, upload, download; where keys come from."""

from .apiframe import DEFAULT_BASE_URL, ApiframeClient

__all__ = ["DEFAULT_BASE_URL", "ApiframeClient"]
