"""The one set of rules for text a person typed that others will read: names and reasons.

Every name that reaches a page or a report (wearer, location, hospital, console user and
actor names, legal hold reasons) is refused if it holds a control character, a bidi
override or isolate, or a zero-width character (``evidence.text`` lists them), with a
message naming the character. A justification for viewing or exporting footage must also
say something: at least ``MIN_WORDS`` words and ``MIN_LETTERS`` letters, so that ".", a
zero-width space or "x" cannot stand for a reason in the custody log (decision 1764).
"""

from __future__ import annotations

import re

from evidence.text import escape_unsafe, unsafe_characters
from gateway.errors import InvalidTextError

__all__ = ["MIN_LETTERS", "MIN_WORDS", "check_justification", "check_name", "shown"]

MIN_WORDS = 2
MIN_LETTERS = 8
MAX_NAME = 200
MAX_REASON = 2000
_WORD = re.compile(r"[^\W_]+")


def check_name(text: str, what: str, *, limit: int = MAX_NAME) -> str:
    """``text`` stripped, if it is at most ``limit`` characters with none unsafe to show.

    ``what`` names the field in the message ("wearer", "location", ...). An empty name is
    allowed here; a caller that needs one says so.
    """
    stripped = text.strip()
    found = unsafe_characters(stripped)
    if found:
        raise InvalidTextError(
            f"the {what} {_shown(stripped)} holds {', '.join(found)}: control, bidirectional "
            "and zero-width characters are not allowed in names; type it again as plain text"
        )
    if len(stripped) > limit:
        raise InvalidTextError(f"the {what} is longer than {limit} characters")
    return stripped


def check_justification(text: str, what: str = "justification") -> str:
    """``text`` stripped, if it is a reason a reader can understand: plain text of at least
    MIN_WORDS words and MIN_LETTERS letters (a case or request number counts as a word)."""
    stripped = check_name(text, what, limit=MAX_REASON)
    words = _WORD.findall(stripped)
    letters = sum(1 for character in stripped if character.isalpha())
    if len(words) < MIN_WORDS or letters < MIN_LETTERS:
        raise InvalidTextError(
            f"the {what} {_shown(stripped)} does not say why: write at least {MIN_WORDS} "
            f"words and {MIN_LETTERS} letters, such as 'complaint 2026-114 from ward 3' or "
            "'court order 7/2026'"
        )
    return stripped


def shown(value: object) -> object:
    """``value`` with every string in it (through dicts and lists) escaped for display:
    for what came from elsewhere (a badge's alert, an older record) and is shown, not kept."""
    if isinstance(value, str):
        return escape_unsafe(value)
    if isinstance(value, dict):
        return {key: shown(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [shown(item) for item in value]
    return value


def _shown(text: str) -> str:
    """The text as a message may quote it: escaped, and cut short."""
    return "'" + escape_unsafe(text[:60]) + ("...'" if len(text) > 60 else "'")
