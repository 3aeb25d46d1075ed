"""Text shown to people: the characters that must never reach a page or a report as they are.

Control characters (C0, DEL, C1), bidirectional embeddings, overrides and isolates
(U+202A-202E, U+2066-2069, U+061C), zero-width characters and marks (U+200B-200F,
U+2060-2064, U+FEFF), line and paragraph separators, and every other format, surrogate
or private-use character (Unicode categories Cc, Cf, Cs, Co, Zl, Zp) can hide text, reorder
what a reader sees ("exe.txt" shown for "txt.exe"), or split one line of a report into two.
The gateway refuses them in names and reasons (``gateway.naming``); the court's verifier
shows any it finds in an older package escaped, as ``\\u202e``, never as they are.
"""

from __future__ import annotations

import unicodedata

__all__ = ["escape_unsafe", "is_unsafe", "json_escape_unsafe", "unsafe_characters"]

_JSON_SPACE = frozenset("\n\r\t")
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
_NAMED = {
    "\u061c": "ARABIC LETTER MARK",
    "\u200b": "ZERO WIDTH SPACE",
    "\u200c": "ZERO WIDTH NON-JOINER",
    "\u200d": "ZERO WIDTH JOINER",
    "\u200e": "LEFT-TO-RIGHT MARK",
    "\u200f": "RIGHT-TO-LEFT MARK",
    "\u202a": "LEFT-TO-RIGHT EMBEDDING",
    "\u202b": "RIGHT-TO-LEFT EMBEDDING",
    "\u202c": "POP DIRECTIONAL FORMATTING",
    "\u202d": "LEFT-TO-RIGHT OVERRIDE",
    "\u202e": "RIGHT-TO-LEFT OVERRIDE",
    "\u2066": "LEFT-TO-RIGHT ISOLATE",
    "\u2067": "RIGHT-TO-LEFT ISOLATE",
    "\u2068": "FIRST STRONG ISOLATE",
    "\u2069": "POP DIRECTIONAL ISOLATE",
    "\ufeff": "ZERO WIDTH NO-BREAK SPACE",
}


def is_unsafe(character: str) -> bool:
    """True for a character that must not be shown as it is (see the module's list)."""
    return character in _NAMED or unicodedata.category(character) in _UNSAFE_CATEGORIES


def _code(character: str) -> str:
    point = ord(character)
    return (
        f"\\x{point:02x}"
        if point < 0x100
        else f"\\u{point:04x}"
        if point < 0x10000
        else (f"\\U{point:08x}")
    )


def unsafe_characters(text: str) -> list[str]:
    """Each distinct unsafe character of ``text``, described (``\\u202e RIGHT-TO-LEFT
    OVERRIDE``), in the order they first appear."""
    found: dict[str, str] = {}
    for character in text:
        if character not in found and is_unsafe(character):
            name = _NAMED.get(character) or unicodedata.name(character, "control character")
            found[character] = f"{_code(character)} {name}"
    return list(found.values())


def escape_unsafe(text: str) -> str:
    """``text`` with each unsafe character written as its escape (``\\x00``, ``\\u202e``)."""
    if not any(is_unsafe(character) for character in text):
        return text
    return "".join(_code(character) if is_unsafe(character) else character for character in text)


def json_escape_unsafe(document: str) -> str:
    """JSON text (``ensure_ascii=False``) with each unsafe character as a ``\\uXXXX``
    escape: the same JSON value, which a terminal cannot show reordered or split."""
    # JSON escapes every C0 control inside its strings itself: one left raw is the layout's
    # own whitespace (indent=2), and stays
    if not any(is_unsafe(character) and character not in _JSON_SPACE for character in document):
        return document
    out = []
    for character in document:
        if character in _JSON_SPACE or not is_unsafe(character):
            out.append(character)
            continue
        point = ord(character)
        if point > 0xFFFF:  # a UTF-16 surrogate pair, as JSON writes one
            point -= 0x10000
            out.append(f"\\u{0xD800 + (point >> 10):04x}\\u{0xDC00 + (point & 0x3FF):04x}")
        else:
            out.append(f"\\u{point:04x}")
    return "".join(out)
