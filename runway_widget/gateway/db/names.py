"""Participants' names: one form for each, a key that look-alikes share, hub users' own key.

A token or join name is typed by a person, sometimes to pass for someone else: ``carol``
with a zero-width space, a soft hyphen, full-width letters, a capital, or a Cyrillic "с".
So a name is stored in its `normal_name` form (NFKC, no control, format or other invisible
characters, single spaces; never cut: a name too long is refused), and under its
`look_key`: two names with one key look alike, and a unique index on the key lets only the
first of them in (on every process sharing the database).

Hub users are named by the hub, which decides who is who: they are keyed by `hub_key`, a
hash of the exact name, never folded or cut, so ``ann lee`` and ``ann  lee`` stay two people.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

__all__ = ["NAME_LIMIT", "hub_key", "look_key", "normal_name"]

NAME_LIMIT = 64
_KEPT_SCRIPTS = ("LATIN", "COMMON")  # Latin letters, digits and signs count as they are
_HIDDEN_CATEGORIES = ("Cc", "Cf", "Cs", "Co")  # control, format, surrogate, private use
# Default-ignorable code points that are not format characters (Cf): fillers and selectors
# that show as nothing.
_INVISIBLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0"
    "\U0001d173-\U0001d17a\U000e0100-\U000e01ef]"
)


def normal_name(name: str) -> str:
    """The form a participant's name is stored and shown in; ValueError says what is wrong."""
    text = unicodedata.normalize("NFKC", str(name))
    text = "".join(c for c in text if unicodedata.category(c) not in _HIDDEN_CATEGORIES)
    text = " ".join(unicodedata.normalize("NFKC", _INVISIBLE.sub("", text)).split())
    if not text:
        raise ValueError("a participant needs a name")
    if len(text) > NAME_LIMIT:
        raise ValueError(f"a name has at most {NAME_LIMIT} characters")
    return text


def look_key(name: str) -> str:
    """What ``name`` looks like, hashed: case folded, and each letter of another script that
    looks like a Latin one (Cyrillic "с", Greek "ρ") taken as that Latin letter."""
    from confusable_homoglyphs import categories, confusables

    folded = unicodedata.normalize("NFKC", normal_name(name).casefold())
    found = confusables.is_confusable(folded, greedy=True, preferred_aliases=["latin"]) or []
    latin: dict[str, str] = {}
    for entry in found:
        if entry["alias"] in _KEPT_SCRIPTS:
            continue
        glyphs = [
            glyph["c"]
            for glyph in entry["homoglyphs"]
            if all(categories.alias(c) == "LATIN" for c in glyph["c"])
        ]
        if glyphs:
            latin[entry["character"]] = min(glyphs)
    seen = "".join(latin.get(c, c) for c in folded).casefold()
    return _digest("look:" + seen)


def hub_key(name: str) -> str:
    """The key of a hub user: their exact name (any length, any spacing), hashed."""
    return _digest("hub:" + name)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
