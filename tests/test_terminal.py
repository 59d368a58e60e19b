"""Server text made inert for the terminal: escape sequences go whole, controls go."""

from __future__ import annotations

import json

import pytest

from runway_widget._terminal import inert, inert_json


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, é, 東京", "plain text, é, 東京"),
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b[2J\x1b[H\x1b[3;1Hcursor", "cursor"),
        ("a\x1b]0;window title\x07b", "ab"),
        ("a\x1b]0;window title\x1b\\b", "ab"),
        ("\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("a\x1bPq#0;2;0;0;0\x1b\\b", "ab"),  # DCS (sixel)
        ("a\x1b_apc\x1b\\b", "ab"),
        ("a\x1b(0b", "ab"),  # charset switch
        ("a\x1bcb", "ab"),  # full reset
        ("a\x9b2Jb", "ab"),  # C1 CSI
        ("a\x9d0;title\x9cb", "ab"),  # C1 OSC
        ("bell\x07 back\x08space nul\x00", "bell backspace nul"),
        ("over\rwrite", "overwrite"),
        ("line\nbreak\ttab", "line break tab"),
        ("\u202eevil\u202c \u2066iso\u2069", "evil iso"),
        ("cut off \x1b]0;no end", "cut off "),
        ("lone escape \x1b", "lone escape "),
        (42, "42"),
    ],
)
def test_inert_keeps_the_text_and_drops_the_controls(raw, shown):
    assert inert(raw) == shown


def test_multiline_keeps_newlines_and_tabs_only():
    assert inert("a\nb\tc\r\nd\x1b[1m", multiline=True) == "a\nb\tc\nd"


def test_inert_json_escapes_every_control_and_keeps_the_data():
    data = {"m": "a\x1b[1mb\x9b\x7f\u202e é\n"}
    text = inert_json(data)
    assert json.loads(text) == data
    for raw in ("\x1b", "\x9b", "\x7f", "\u202e", "\n\"", "\r"):
        assert raw not in text
    assert "é" in text
