"""Chain verification names exactly what is wrong with a run of segments."""

from __future__ import annotations

import os

import pytest

from evidence.chain import FindingKind, check_chain, verify_run
from evidence.errors import ChainError, VerificationError
from evidence.hashing import ZERO_DIGEST
from evidence.keys import BadgeIdentity, CustodianPrivateKey, SigningKey
from evidence.segment import SealedSegment, seal_segment
from tests.evidence.conftest import SealRun, facts_for


def kinds(segments: list[SealedSegment]) -> list[FindingKind]:
    return [finding.kind for finding in check_chain([s.header for s in segments]).findings]


def test_an_intact_run(seal_run: SealRun, identity: BadgeIdentity) -> None:
    run = seal_run(6)
    report = verify_run(run, identity.signing_key.public_key, expected_previous=ZERO_DIGEST)
    assert report.intact
    assert (report.first_seq, report.last_seq, report.count) == (0, 5, 6)
    report.raise_for_breaks()


def test_gap_names_its_sequence_numbers(seal_run: SealRun) -> None:
    run = seal_run(8)
    del run[3:5]
    report = check_chain([s.header for s in run])
    assert [f.kind for f in report.findings] == [FindingKind.GAP]
    assert report.findings[0].message == "gap: seq 2 to 5 (2 segments missing)"
    with pytest.raises(ChainError, match="gap: seq 2 to 5") as caught:
        report.raise_for_breaks()
    assert caught.value.findings == report.breaks


def test_duplicate(seal_run: SealRun) -> None:
    run = seal_run(4)
    assert kinds([*run[:3], run[2], run[3]]) == [FindingKind.DUPLICATE]


def test_reorder_is_not_mistaken_for_a_gap(seal_run: SealRun) -> None:
    run = seal_run(5)
    run[1], run[2] = run[2], run[1]
    assert kinds(run) == [FindingKind.REORDER]


def test_insertion_of_a_segment_from_another_run(
    seal_run: SealRun, identity: BadgeIdentity, custodian: CustodianPrivateKey
) -> None:
    run = seal_run(5)
    # Validly signed by the same badge, but not part of this chain.
    stray = seal_segment(
        os.urandom(100), facts_for(2, os.urandom(32)), identity, custodian.public_key
    )
    replaced = [*run[:2], stray, *run[3:]]
    assert kinds(replaced) == [FindingKind.INSERTION, FindingKind.INSERTION]
    assert kinds([*run, stray]) == [FindingKind.REORDER, FindingKind.INSERTION]


def test_segment_from_another_badge_is_an_insertion(
    seal_run: SealRun, custodian: CustodianPrivateKey
) -> None:
    run = seal_run(3)
    other = BadgeIdentity.generate("badge-999")
    foreign = seal_segment(b"x", facts_for(3, run[-1].header.digest()), other, custodian.public_key)
    report = check_chain([*[s.header for s in run], foreign.header])
    assert [f.kind for f in report.findings] == [FindingKind.INSERTION]
    assert "badge-999" in report.findings[0].message


def test_reboot_that_continues_correctly_is_not_a_break(
    identity: BadgeIdentity, custodian: CustodianPrivateKey
) -> None:
    segments: list[SealedSegment] = []
    previous = ZERO_DIGEST
    for seq in range(6):
        boot = 1 if seq < 3 else 2
        # after the reboot the monotonic clock restarts near zero
        facts = facts_for(seq, previous, boot=boot, mono_offset_ns=0 if boot == 1 else 6 * 10**9)
        segment = seal_segment(b"v" * 64, facts, identity, custodian.public_key)
        previous = segment.header.digest()
        segments.append(segment)
    report = verify_run(segments, identity.signing_key.public_key)
    assert report.intact
    assert [f.kind for f in report.findings] == [FindingKind.REBOOT]
    assert report.findings[0].message == "reboot before segment 3 (boot 1 to 2)"


def test_first_segment_must_link_to_what_came_before(seal_run: SealRun) -> None:
    run = seal_run(3)
    report = check_chain([s.header for s in run], expected_previous=os.urandom(32))
    assert [f.kind for f in report.findings] == [FindingKind.INSERTION]


def test_wrong_badge_key_fails_before_the_chain(seal_run: SealRun) -> None:
    with pytest.raises(VerificationError, match="segment 0 of badge badge-007"):
        verify_run(seal_run(2), SigningKey.generate().public_key)


def test_empty_run_is_refused() -> None:
    with pytest.raises(ChainError, match="empty"):
        check_chain([])
