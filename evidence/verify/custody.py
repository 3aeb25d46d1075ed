"""Verifying what the gateway says about the evidence: receipts, custody entries, the export.

The export's own custody entry (made before the package was written, and proven to be in
the ledger) names the clip's SHA-256, the derived MP4's, and the certificates the package
carries, so none of them can be swapped without breaking the gateway's signed checkpoint.

Each custody entry names the leaf of the one before it about the same subject
(``previous``), and the export entry, the newest about the incident when the package was
made, is proven by the checkpoint: following the links from it shows the package holds
every custody entry about the incident, or names the one it withholds (decision 2051).
Entries recorded before the links were kept have no ``previous``; the chain then ends
there, and the report says from which leaf on completeness is proven.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.serialization import Encoding

from evidence.errors import EvidenceError
from evidence.hashing import sha256
from evidence.ledger.entry import LedgerEntry
from evidence.messages import Receipt
from evidence.package.layout import (
    CA_CERTIFICATE,
    CLIP,
    CUSTODY,
    DERIVED_MP4,
    TSA_CERTIFICATE,
    Check,
    custody_document,
    entry_path,
    render_json,
)
from evidence.verify.files import PackageContents
from evidence.verify.findings import Findings
from evidence.verify.ledger import LedgerView
from evidence.verify.media import MediaView

_SEGMENT_RECEIPT = re.compile(r"receipts/segment-([0-9]+)(?:-[0-9]+)?\.receipt")


@dataclass(frozen=True)
class ExportEntry:
    """The custody entry of the export that made this package."""

    index: int
    entry: LedgerEntry

    @property
    def detail(self) -> dict[str, object]:
        """The entry's ``detail`` map (empty if it has none)."""
        detail = self.entry.body.get("detail")
        return dict(detail) if isinstance(detail, dict) else {}

    def text(self, field: str) -> str:
        """A text field of the body (empty if absent)."""
        value = self.entry.body.get(field)
        return value if isinstance(value, str) else ""


def check_receipts(
    contents: PackageContents, ledger: LedgerView, media: MediaView, f: Findings
) -> None:
    """Each receipt: signed by the gateway, in the ledger, about a segment or the incident here."""
    by_digest: dict[bytes, LedgerEntry] = {}
    for receipt_entry in ledger.of_kind("receipt").values():
        digest = receipt_entry.body.get("receipt_sha256")
        if isinstance(digest, bytes):
            by_digest[digest] = receipt_entry
    receipted: set[tuple[str, str]] = set()
    for path in contents.paths("receipt"):
        data = contents.small.get(path)
        if data is None or ledger.gateway_key is None:
            continue
        f.examine(Check.RECEIPT)
        try:
            receipt = Receipt.open(data, ledger.gateway_key, path)
        except EvidenceError as error:
            f.fail(Check.RECEIPT, str(error), file=path)
            continue
        recorded = by_digest.get(sha256(data))
        if recorded is None:
            f.fail(Check.RECEIPT, "no ledger entry records this receipt", file=path)
            continue
        body = recorded.body
        if (body.get("badge"), body.get("subject"), body.get("key"), body.get("sha256")) != (
            receipt.badge,
            receipt.subject,
            receipt.key,
            receipt.sha256,
        ):
            f.fail(Check.LEDGER_ENTRY, "its ledger entry records another receipt", file=path)
        problem = _receipt_problem(path, receipt, media)
        if problem is not None:
            f.fail(Check.RECEIPT, problem, file=path)
            continue
        receipted.add((receipt.subject, receipt.key))
    if media.record is None:
        return
    for seq in range(media.record.first_seq, media.record.last_seq + 1):
        if seq in media.stems and ("segment", str(seq)) not in receipted:
            f.fail(Check.RECEIPT, f"the package has no receipt for segment {seq}", seq=seq)
    for subject in ("incident", "alert"):
        if (subject, media.record.incident_id) not in receipted:
            f.fail(Check.RECEIPT, f"the package has no receipt for the {subject}")


def _receipt_problem(path: str, receipt: Receipt, media: MediaView) -> str | None:
    """Why ``receipt`` does not acknowledge what its file name says, as the ledger records it."""
    record = media.record
    if record is None or receipt.badge != record.badge_id:
        return f"it is a receipt for badge {receipt.badge}, not for this incident's badge"
    named = _SEGMENT_RECEIPT.fullmatch(path)
    if receipt.subject == "segment":
        seq = int(receipt.key) if receipt.key.isdigit() else -1
        entry = media.segment_entries.get(seq)
        if named is None or int(named[1]) != seq:
            return f"it receipts segment {receipt.key}, which its file name does not name"
        if entry is None or entry.body.get("sealed_sha256") != receipt.sha256:
            return f"it receipts other bytes than the ledger records for segment {receipt.key}"
        return None
    expected = {"incident": media.incident_entry, "alert": media.alert_entry}.get(receipt.subject)
    field = "record_sha256" if receipt.subject == "incident" else "alert_sha256"
    if not path.startswith(f"receipts/{receipt.subject}") or receipt.key != record.incident_id:
        return f"it receipts {receipt.subject} {receipt.key}, which its file name does not name"
    if expected is None or expected.body.get(field) != receipt.sha256:
        return f"it receipts other bytes than the ledger records for the {receipt.subject}"
    return None


def check_custody(
    contents: PackageContents, ledger: LedgerView, media: MediaView, f: Findings
) -> ExportEntry | None:
    """custody.json against the ledger's custody entries; return the export's own entry."""
    record = media.record
    custody = ledger.of_kind("custody")
    if record is None:
        return None
    f.examine(Check.CUSTODY, len(custody))
    for index, entry in sorted(custody.items()):
        if entry.body.get("subject") not in (record.incident_id, record.badge_id):
            f.fail(Check.CUSTODY, f"ledger entry {index} is about something else", file=CUSTODY)
    exports = [
        ExportEntry(index, entry)
        for index, entry in sorted(custody.items())
        if entry.body.get("action") == "export" and entry.body.get("subject") == record.incident_id
    ]
    data = contents.small.get(CUSTODY)
    if data is None:
        f.fail(Check.FILE_LIST, "the package has no custody.json", file=CUSTODY)
    elif data != render_json(custody_document(record.incident_id, sorted(custody.items()))):
        f.fail(
            Check.CUSTODY,
            "it is not exactly the custody entries of the package's ledger files",
            file=CUSTODY,
        )
    if not exports:
        f.fail(Check.CUSTODY, "no custody entry records the export that made this package")
        return None
    export = exports[-1]
    media.custody_unlinked_before = _follow_chain(custody, record.incident_id, export, f)
    return export


def _follow_chain(
    custody: dict[int, LedgerEntry], incident_id: str, export: ExportEntry, f: Findings
) -> int | None:
    """Follow ``previous`` from the export entry; return the leaf of an entry without one.

    Every custody entry about the incident must be on the chain, and every entry the chain
    names must be in the package. None when the chain reaches its first entry.
    """
    about = {index for index, entry in custody.items() if entry.body.get("subject") == incident_id}
    newer = [index for index in about if index > export.index]
    for later in sorted(newer):
        f.fail(Check.CUSTODY, f"custody entry {later} about the incident is newer than its export")
    seen: set[int] = set()
    index = export.index
    while True:
        entry = custody.get(index)
        if entry is None or entry.body.get("subject") != incident_id:
            f.fail(
                Check.CUSTODY,
                f"the custody entry at leaf {index}, which leaf {max(seen)} names as the one "
                "before it about this incident, is not in the package: it was withheld",
                file=entry_path(index),
            )
            return None
        seen.add(index)
        if "previous" not in entry.body:
            return index  # recorded before entries named the one before them
        previous = entry.body["previous"]
        if previous is not None and (not isinstance(previous, int) or previous >= index):
            f.fail(
                Check.CUSTODY,
                f"the custody entry at leaf {index} names {previous!r} as the one before it",
                file=entry_path(index),
            )
            return None
        if previous is None:
            break
        index = previous
    for stray in sorted(about - seen - set(newer)):
        f.fail(
            Check.CUSTODY,
            f"custody entry {stray} about the incident is not on the chain the export ends",
            file=entry_path(stray),
        )
    return None


def check_export(
    contents: PackageContents,
    ledger: LedgerView,
    media: MediaView,
    export: ExportEntry,
    f: Findings,
) -> None:
    """What the export entry names: segment range, clip, derived MP4 and certificates."""
    detail = export.detail
    record = media.record
    if record is not None and (
        detail.get("badge"),
        detail.get("first_seq"),
        detail.get("last_seq"),
    ) != (record.badge_id, record.first_seq, record.last_seq):
        f.fail(Check.CUSTODY, "the export entry names another badge or segment range")
    clip = contents.records.get(CLIP)
    if clip is not None and detail.get("clip_sha256") != clip.sha256:
        f.fail(Check.CLIP, "it is not the clip the export entry names", file=CLIP)
    f.examine(Check.DERIVED)
    derived = contents.records.get(DERIVED_MP4)
    named = detail.get("derived_mp4_sha256")
    if derived is None and named is not None:
        f.fail(
            Check.DERIVED,
            "the export entry names a derived MP4 the package lacks",
            file=DERIVED_MP4,
        )
    elif derived is not None and named != derived.sha256:
        f.fail(Check.DERIVED, "it is not the MP4 the export entry names", file=DERIVED_MP4)
    f.examine(Check.CERTIFICATES, 2)
    for path, certificate, field in (
        (CA_CERTIFICATE, ledger.ca_certificate, "evidence_ca_sha256"),
        (TSA_CERTIFICATE, ledger.tsa_certificate, "tsa_certificate_sha256"),
    ):
        if certificate is not None and sha256(certificate.public_bytes(Encoding.DER)) != detail.get(
            field
        ):
            f.fail(
                Check.CERTIFICATES, "it is not the certificate the export entry names", file=path
            )
