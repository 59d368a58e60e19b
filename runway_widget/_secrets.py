"""Secrets (API keys, webhook secrets): normalised on the way in, scrubbed on the way out.

A key read from a file carries its trailing newline; a header cannot carry it, and the
HTTP library's complaint would quote the key. So keys are stripped, and a key with a
control character left inside is refused with a message that says where, never what.
Text that leaves the client (exception messages, log lines) goes through a `Redactor`,
which knows every spelling of a secret that a library or a server may produce: raw,
``repr``-escaped, JSON-escaped and URL-encoded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = ["Redactor", "key_problem", "mask_secret", "normalize_secret"]

MASK_VISIBLE_FROM = 16  # a secret shorter than this shows nothing of itself when masked


def mask_secret(secret: str | None) -> str:
    """``…`` + the last 4 characters of a long secret: tells keys apart, never enough to use."""
    if not secret:
        return "(not set)"
    return "…" + secret[-4:] if len(secret) >= MASK_VISIBLE_FROM else "…"


def normalize_secret(value: str | None) -> str | None:
    """Without surrounding whitespace (a key read from a file ends in a newline); None if empty."""
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def key_problem(secret: str, what: str = "the API key") -> str | None:
    """Why ``secret`` cannot travel in an HTTP header, or None when it can.

    The answer names the position and kind of the bad character, never the secret itself.
    """
    for position, char in enumerate(secret, start=1):
        if char == " ":
            continue
        if char in "\r\n":
            kind = "a line break"
        elif not char.isprintable():
            kind = "a control character"
        elif not char.isascii():
            kind = "a non-ASCII character"
        else:
            continue
        return (
            f"{what} contains {kind} at position {position} of {len(secret)}: copy it again "
            "(only its surrounding whitespace is removed for you)"
        )
    return None


class Redactor:
    """Replaces every spelling of the given secrets in a text by the secret's masked form."""

    MIN_LENGTH = 4  # shorter "secrets" would blank out ordinary words

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        forms: dict[str, str] = {}
        for secret in secrets:
            if secret and len(secret) >= self.MIN_LENGTH:
                masked = mask_secret(normalize_secret(secret))
                forms.update(dict.fromkeys(_spellings(secret), masked))
        # Longest first, so a short spelling never breaks up a longer one before it is seen.
        self._forms = sorted(forms.items(), key=lambda item: len(item[0]), reverse=True)

    def __call__(self, text: str) -> str:
        for form, masked in self._forms:
            if form in text:
                text = text.replace(form, masked)
        return text

    def __bool__(self) -> bool:
        return bool(self._forms)


def _spellings(secret: str) -> set[str]:
    """The forms a secret takes in other programs' messages (``repr``, JSON, URLs)."""
    forms = {
        secret,
        secret.strip(),
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        secret.encode("unicode_escape").decode("ascii"),
    }
    return {form for form in forms if len(form) >= Redactor.MIN_LENGTH}
