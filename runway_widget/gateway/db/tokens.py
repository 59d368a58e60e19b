"""Personal tokens and join codes: random, stored only as hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["TOKEN_PREFIX", "hint", "new_token", "same_hash", "secret_hash"]

TOKEN_PREFIX = "rwg_"
TOKEN_BYTES = 32  # 256 random bits; the spec asks for at least 128


def new_token() -> str:
    """A fresh personal token (shown once, to its owner, and never stored)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def secret_hash(secret: str) -> str:
    """The SHA-256 hex digest the database keeps instead of the secret itself."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Constant-time equality of two hashes, so timing tells nothing about a token."""
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))


def hint(secret: str) -> str:
    """``…`` + the last 2 characters: enough to tell codes apart in a list, no more."""
    return "…" + secret[-2:] if len(secret) >= 6 else "…"
