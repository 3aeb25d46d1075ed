"""The input rules: names refuse control, bidi and zero-width characters with a message
naming them; a justification must say something; the court's report escapes what an older
package holds."""

from __future__ import annotations

import json

import pytest

from evidence.package.layout import Check
from evidence.text import escape_unsafe, json_escape_unsafe, unsafe_characters
from evidence.verify.findings import Finding
from evidence.verify.report import Summary, VerificationReport
from gateway.errors import InvalidTextError
from gateway.naming import check_justification, check_name

UNSAFE = [
    ("\x00", "\\x00"),
    ("\x1b", "\\x1b"),
    ("\x7f", "\\x7f"),
    ("\x85", "\\x85"),
    ("\u200b", "ZERO WIDTH SPACE"),
    ("\u200f", "RIGHT-TO-LEFT MARK"),
    ("\u202a", "LEFT-TO-RIGHT EMBEDDING"),
    ("\u202e", "RIGHT-TO-LEFT OVERRIDE"),
    ("\u2066", "LEFT-TO-RIGHT ISOLATE"),
    ("\u2069", "POP DIRECTIONAL ISOLATE"),
    ("\u2028", "\\u2028"),
    ("\ufeff", "ZERO WIDTH NO-BREAK SPACE"),
]


@pytest.mark.parametrize(("character", "named"), UNSAFE)
def test_a_name_with_a_control_bidi_or_zero_width_character_is_refused(
    character: str, named: str
) -> None:
    with pytest.raises(InvalidTextError, match="wearer") as refused:
        check_name(f"Nurse Aliya{character}Omarova", "wearer")
    assert named in str(refused.value)
    assert character not in str(refused.value)  # the message itself shows it escaped


def test_plain_names_in_any_script_pass_stripped() -> None:
    assert check_name("  Айгерим Нұрланқызы ", "wearer") == "Айгерим Нұрланқызы"
    assert check_name("Ward 3 / ER (east)", "location") == "Ward 3 / ER (east)"
    assert check_name("", "location") == ""
    with pytest.raises(InvalidTextError, match="longer than 200"):
        check_name("x" * 201, "location")


@pytest.mark.parametrize(
    "reason", ["\x00", "\u200b", ".", "x", "ok ok", "aaaaaaaaaaaa", "1 2 3 4", "complaint\u202e 42"]
)
def test_a_justification_that_says_nothing_is_refused(reason: str) -> None:
    with pytest.raises(InvalidTextError, match="justification"):
        check_justification(reason)


@pytest.mark.parametrize(
    "reason",
    ["complaint 42", "court order 7/2026", "жалоба пациента 42", "Prosecutor's request 2026/117"],
)
def test_a_short_real_reason_is_accepted(reason: str) -> None:
    assert check_justification(f" {reason} ") == reason


def test_the_verifier_report_shows_an_old_packages_characters_escaped() -> None:
    summary = Summary(
        incident_id="inc-1",
        badge_id="badge-a",
        wearer="Ivan\u202evokaB",
        exported_by="clerk\nVERIFIED: forged line",
        justification="court\u200b order",
        tsa_name="TSA",
    )
    report = VerificationReport("pkg\u2066.zip", (), {}, summary).human()
    assert "\u202e" not in report and "\u2066" not in report and "\u200b" not in report
    assert "(wearer Ivan\\u202evokaB)" in report and "pkg\\u2066.zip" in report
    assert "Exported by clerk\\x0aVERIFIED: forged line at" in report
    failed = VerificationReport(
        "p.zip", (Finding(Check.FILE_LIST, "unexpected file", "a\u202eb.ts"),), {}, Summary()
    ).human()
    assert "a\\u202eb.ts" in failed and "\u202e" not in failed
    assert escape_unsafe("plain") == "plain" and unsafe_characters("plain") == []


def test_the_json_report_escapes_them_and_keeps_the_same_value() -> None:
    value = {"wearer": "Ivan\u202evokaB \U000e0041 Айгерим", "note": "a\u2066b\x00\x85\x7f"}
    text = json_escape_unsafe(json.dumps(value, ensure_ascii=False, indent=2))
    assert json.loads(text) == value
    assert unsafe_characters(text.replace("\n", "")) == []
    assert "Айгерим" in text and "\\u202e" in text
