"""Verifying what the badge made: its keys, the incident record, the alert and every segment.

A badge key counts only if a custody entry in the (proven) ledger records its enrolment, so a
key slipped into a package signs nothing. Each segment's header must be signed by such a key,
name its own seq, give its plaintext's size and SHA-256, agree with its ledger entry, and
chain to its neighbours over the incident record's whole range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from evidence.chain import FindingKind, check_chain
from evidence.envelope import Envelope
from evidence.errors import EvidenceError
from evidence.hashing import sha256
from evidence.incident import ALERT_CONTEXT, ALERT_TYPE, IncidentRecord, SignedIncident
from evidence.incident import SIGNATURE_CONTEXT as INCIDENT_CONTEXT
from evidence.keys import SigningPublicKey
from evidence.ledger.entry import LedgerEntry
from evidence.package.layout import ALERT_RECORD, INCIDENT_RECORD, Check, number_in
from evidence.segment import MAGIC, SIGNATURE_CONTEXT, SIGNATURE_SIZE, SegmentHeader
from evidence.verify.files import PackageContents
from evidence.verify.findings import Findings
from evidence.verify.ledger import LedgerView

GATEWAY_GENERATED = "gateway-generated"
KEY_ORIGINS = ("badge-generated", "badge-hardware", GATEWAY_GENERATED)
"""How a badge key can have been made (evidence.enrolment.KeyOrigin's values)."""
_BADGE_KEY = re.compile(r"keys/badge-([a-z0-9][a-z0-9-]*)-([1-9][0-9]*)\.pub")
_SEALED_OVERHEAD = len(MAGIC) + 4 + SIGNATURE_SIZE
"""Bytes of a sealed segment besides its header and ciphertext: magic, length, signature."""


@dataclass
class MediaView:
    """What the badge's files establish."""

    badge_id: str | None = None
    keys: dict[str, SigningPublicKey] = field(default_factory=dict)
    """Badge keys the ledger records as enrolled, by file."""
    origins: dict[str, str] = field(default_factory=dict)
    """How each of those keys was made, as its enrolment entry says, by file."""
    record: IncidentRecord | None = None
    headers: dict[int, SegmentHeader] = field(default_factory=dict)
    """Every well-formed header, by seq."""
    signers: dict[int, str] = field(default_factory=dict)
    """The key file that verified each segment's header, by seq."""
    stems: dict[int, str] = field(default_factory=dict)
    """``segments/<seq>`` for every segment in the package, by seq."""
    segment_entries: dict[int, LedgerEntry] = field(default_factory=dict)
    """The ledger entry of each segment, by seq."""
    incident_entry: LedgerEntry | None = None
    alert_entry: LedgerEntry | None = None


def read_media(contents: PackageContents, view: LedgerView, f: Findings) -> MediaView:
    """Check the badge keys, the incident record, the alert and the segments."""
    media = MediaView()
    _read_incident(contents, view, media, f)
    _read_badge_keys(contents, view, media, f)
    _verify_incident(contents, view, media, f)
    _read_segments(contents, view, media, f)
    _check_chain(media, f)
    _read_alert(contents, view, media, f)
    return media


def _read_incident(
    contents: PackageContents, view: LedgerView, media: MediaView, f: Findings
) -> None:
    """Parse the incident record (its signature is checked once the keys are known)."""
    data = contents.small.get(INCIDENT_RECORD)
    if data is None:
        f.fail(Check.FILE_LIST, "the package has no incident record", file=INCIDENT_RECORD)
        return
    f.examine(Check.INCIDENT_RECORD)
    try:
        media.record = SignedIncident.from_bytes(data, INCIDENT_RECORD).record
    except EvidenceError as error:
        f.fail(Check.INCIDENT_RECORD, str(error), file=INCIDENT_RECORD)
        return
    media.badge_id = media.record.badge_id


def _read_badge_keys(
    contents: PackageContents, view: LedgerView, media: MediaView, f: Findings
) -> None:
    """Keep each badge key that a proven enrolment entry in the ledger names, and its origin."""
    enrolled: dict[tuple[str, int], tuple[object, str]] = {}
    for index, entry in view.of_kind("custody").items():
        subject, generation = entry.body.get("subject"), _detail(entry).get("key_generation")
        if (
            index in view.proven
            and entry.body.get("action") in ("enrol", "key-rotation")
            and isinstance(subject, str)
            and isinstance(generation, int)
        ):
            detail = _detail(entry)
            enrolled[(subject, generation)] = (detail.get("public_key"), _origin(detail))
    for path in contents.paths("badge-key"):
        match = _BADGE_KEY.fullmatch(path)
        data = contents.small.get(path)
        if match is None or data is None:
            continue
        f.examine(Check.BADGE_KEY)
        badge_id, generation = match[1], int(match[2])
        if media.badge_id is not None and badge_id != media.badge_id:
            f.fail(
                Check.BADGE_KEY,
                f"it is a key of badge {badge_id}, not of {media.badge_id}",
                file=path,
            )
            continue
        try:
            key = SigningPublicKey.from_pem(data, Path(path))
        except EvidenceError as error:
            f.fail(Check.BADGE_KEY, str(error), file=path)
            continue
        if key.pem() != data:
            f.fail(Check.BADGE_KEY, "it is not in the one PEM form keys are written in", file=path)
            continue
        recorded, origin = enrolled.get((badge_id, generation), (None, ""))
        if recorded != key.raw:
            f.fail(
                Check.BADGE_KEY,
                f"no proven ledger entry records this key as generation {generation} of badge "
                f"{badge_id}",
                file=path,
            )
            continue
        media.keys[path] = key
        media.origins[path] = origin
    if not media.keys:
        f.fail(Check.BADGE_KEY, "the package holds no badge key the ledger records")


def _origin(detail: dict[str, object]) -> str:
    """How an enrolled key was made; entries from before badge-born keys do not say, and
    every key then was made by the gateway."""
    origin = detail.get("key_origin", GATEWAY_GENERATED)
    return origin if origin in KEY_ORIGINS else "unknown"


def _detail(entry: LedgerEntry) -> dict[str, object]:
    detail = entry.body.get("detail")
    return dict(detail) if isinstance(detail, dict) else {}


def _signer(media: MediaView, signature: bytes, context: str, payload: bytes) -> str | None:
    """The key file whose key signed ``payload`` under ``context``, if any."""
    for path, key in media.keys.items():
        try:
            key.verify(signature, context, payload, path)
        except EvidenceError:
            continue
        return path
    return None


def _verify_incident(
    contents: PackageContents, view: LedgerView, media: MediaView, f: Findings
) -> None:
    record = media.record
    data = contents.small.get(INCIDENT_RECORD)
    if record is None or data is None:
        return
    envelope = Envelope.from_bytes(data, INCIDENT_RECORD)  # parsed once already: cannot fail
    if _signer(media, envelope.signature, INCIDENT_CONTEXT, envelope.record_bytes) is None:
        f.fail(Check.INCIDENT_RECORD, "no badge key in the package signed it", file=INCIDENT_RECORD)
    f.examine(Check.LEDGER_ENTRY)
    for entry in view.of_kind("incident").values():
        body = entry.body
        if body.get("badge") == record.badge_id and body.get("incident") == record.incident_id:
            media.incident_entry = entry
            if (
                body.get("record_sha256") != sha256(data)
                or body.get("first_seq") != record.first_seq
                or body.get("last_seq") != record.last_seq
            ):
                f.fail(
                    Check.LEDGER_ENTRY,
                    "the incident's ledger entry names another record or segment range",
                    file=INCIDENT_RECORD,
                )
            return
    f.fail(Check.LEDGER_ENTRY, "no ledger entry records this incident", file=INCIDENT_RECORD)


def _read_segments(
    contents: PackageContents, view: LedgerView, media: MediaView, f: Findings
) -> None:
    stems: dict[int, set[str]] = {}
    for role in ("segment", "segment-header", "segment-signature"):
        for path in contents.paths(role):
            stems.setdefault(number_in(path), set()).add(path.rsplit(".", 1)[0])
    widths = {len(stem) for names in stems.values() for stem in names}
    if len(widths) > 1:
        f.fail(Check.FILE_LIST, "segment file names differ in width, so they sort out of order")
    entries: dict[int, LedgerEntry] = {}
    for entry in view.of_kind("segment").values():
        seq = entry.body.get("seq")
        if entry.body.get("badge") == media.badge_id and isinstance(seq, int):
            entries[seq] = entry
    for seq in sorted(stems):
        (stem,) = sorted(stems[seq])[:1]
        media.stems[seq] = stem
        missing = [
            suffix for suffix in (".ts", ".header", ".sig") if stem + suffix not in contents.roles
        ]
        if missing:
            f.fail(Check.FILE_LIST, f"segment {seq} lacks its {', '.join(missing)} file", seq=seq)
            continue
        _check_segment(contents, media, seq, stem, f)
        if seq in media.headers:
            _check_segment_entry(contents, media, seq, entries.get(seq), f)


def _check_segment(
    contents: PackageContents, media: MediaView, seq: int, stem: str, f: Findings
) -> None:
    header_bytes = contents.small.get(stem + ".header")
    signature = contents.small.get(stem + ".sig")
    plaintext = contents.records.get(stem + ".ts")
    if header_bytes is None or signature is None:
        return
    f.examine(Check.SEGMENT_HEADER)
    try:
        header = SegmentHeader.decode(header_bytes, stem + ".header")
    except EvidenceError as error:
        f.fail(Check.SEGMENT_HEADER, str(error), file=stem + ".header", seq=seq)
        return
    if header.seq != seq or header.badge_id != media.badge_id:
        f.fail(
            Check.SEGMENT_HEADER,
            f"the header is for segment {header.seq} of badge {header.badge_id}, not segment "
            f"{seq} of badge {media.badge_id}",
            file=stem + ".header",
            seq=seq,
        )
        return
    media.headers[seq] = header
    f.examine(Check.SEGMENT_SIGNATURE)
    signer = _signer(media, signature, SIGNATURE_CONTEXT, header_bytes)
    if signer is None:
        f.fail(
            Check.SEGMENT_SIGNATURE,
            "no badge key in the package signed this header",
            file=stem + ".sig",
            seq=seq,
        )
    else:
        media.signers[seq] = signer
    f.examine(Check.SEGMENT_PLAINTEXT)
    if plaintext is not None and (plaintext.size, plaintext.sha256) != (
        header.plaintext_size,
        header.plaintext_sha256,
    ):
        f.fail(
            Check.SEGMENT_PLAINTEXT,
            f"it holds {plaintext.size} bytes with SHA-256 {plaintext.sha256.hex()}, but its "
            f"signed header says {header.plaintext_size} bytes with SHA-256 "
            f"{header.plaintext_sha256.hex()}",
            file=stem + ".ts",
            seq=seq,
        )


def _check_segment_entry(
    contents: PackageContents,
    media: MediaView,
    seq: int,
    entry: LedgerEntry | None,
    f: Findings,
) -> None:
    f.examine(Check.LEDGER_ENTRY)
    stem = media.stems[seq]
    header = media.headers[seq]
    header_bytes = contents.small[stem + ".header"]
    if entry is None:
        f.fail(Check.LEDGER_ENTRY, f"no ledger entry records segment {seq}", seq=seq)
        return
    media.segment_entries[seq] = entry
    body = entry.body
    expected_incident = None if media.record is None else media.record.incident_id
    if (
        body.get("header_sha256") != sha256(header_bytes)
        or body.get("incident") != expected_incident
        or body.get("sealed_size") != _SEALED_OVERHEAD + len(header_bytes) + header.ciphertext_size
    ):
        f.fail(
            Check.LEDGER_ENTRY,
            f"the ledger entry of segment {seq} records another header, incident or size",
            file=stem + ".header",
            seq=seq,
        )


def _check_chain(media: MediaView, f: Findings) -> None:
    """One unbroken chain over exactly the incident record's range."""
    record = media.record
    if record is None:
        return
    f.examine(Check.CHAIN)
    expected = range(record.first_seq, record.last_seq + 1)
    outside = sorted(seq for seq in media.stems if seq not in expected)
    for seq in outside:
        f.fail(
            Check.CHAIN,
            f"segment {seq} lies outside the incident's range "
            f"{record.first_seq}..{record.last_seq}",
            seq=seq,
        )
    present = sorted(seq for seq in media.stems if seq in expected)
    if not present:
        f.fail(Check.CHAIN, f"none of segments {record.first_seq}..{record.last_seq} is present")
        return
    if present[0] > record.first_seq:
        f.fail(
            Check.CHAIN,
            f"gap: segments {record.first_seq}..{present[0] - 1} at the start are missing",
            seq=record.first_seq,
        )
    if present[-1] < record.last_seq:
        f.fail(
            Check.CHAIN,
            f"gap: segments {present[-1] + 1}..{record.last_seq} at the end are missing",
            seq=present[-1] + 1,
        )
    # A missing or unreadable header has its own finding; chain the headers there are.
    headers = [media.headers[seq] for seq in present if seq in media.headers]
    if not headers:
        return
    for finding in check_chain(headers).findings:
        if finding.kind is not FindingKind.REBOOT:
            f.fail(Check.CHAIN, finding.message, seq=finding.seq)


def _read_alert(contents: PackageContents, view: LedgerView, media: MediaView, f: Findings) -> None:
    """The badge's alert, if the package has one: signed, about this incident, in the ledger."""
    data = contents.small.get(ALERT_RECORD)
    record = media.record
    alerts = list(view.of_kind("alert").values())
    if data is None:
        if alerts:
            f.fail(
                Check.ALERT, "the ledger entries hold an alert the package lacks", file=ALERT_RECORD
            )
        return
    f.examine(Check.ALERT)
    try:
        envelope = Envelope.from_bytes(data, ALERT_RECORD)
        fields = envelope.record(ALERT_RECORD)
    except EvidenceError as error:
        f.fail(Check.ALERT, str(error), file=ALERT_RECORD)
        return
    if _signer(media, envelope.signature, ALERT_CONTEXT, envelope.record_bytes) is None:
        f.fail(Check.ALERT, "no badge key in the package signed it", file=ALERT_RECORD)
    if record is not None and (
        fields.get("type") != ALERT_TYPE
        or fields.get("badge") != record.badge_id
        or fields.get("incident") != record.incident_id
    ):
        f.fail(Check.ALERT, "it is not an alert of this badge and incident", file=ALERT_RECORD)
    digest = sha256(data)
    for entry in alerts:
        if entry.body.get("alert_sha256") == digest:
            media.alert_entry = entry
            return
    f.fail(Check.ALERT, "no ledger entry records this alert", file=ALERT_RECORD)
