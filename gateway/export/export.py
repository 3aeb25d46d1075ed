"""``gateway export``: one incident as a court package a court can verify offline (docs/export.md).

In order: open the ledger (which refuses an altered one); read every segment of the complete
incident from the vault, check it against what was stored and its badge's key, decrypt it
with the custodian key and stage the plaintext clip beside the output; remux the derived
MP4; record the export in the custody log (who, why, and the SHA-256 of the clip, the MP4 and
the certificates the package will carry); make a fresh checkpoint and have it time-stamped;
then write the package against that checkpoint, verify it as a court would, and move it into
place. The staged plaintext is removed whatever happens.

This module is long because the package is drafted in one pass that follows its layout
(docs/export.md) file by file; staging the footage and writing the zip are modules of their
own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from evidence.canonical import CanonicalValue
from evidence.errors import EvidenceError
from evidence.hashing import sha256
from evidence.identifiers import validate_incident_id
from evidence.incident import SignedIncident
from evidence.keys import CustodianPrivateKey, SigningPublicKey
from evidence.ledger.checkpoint import format_vkey
from evidence.package.instructions import InstructionFacts, SignedSegment, render_instructions
from evidence.package.layout import (
    ALERT_RECORD,
    CA_CERTIFICATE,
    CHECKPOINT_NOTE,
    CHECKPOINT_TOKEN,
    CLIP,
    CUSTODY,
    DERIVED_MP4,
    GATEWAY_KEY,
    GATEWAY_VKEY,
    INCIDENT_RECORD,
    INSTRUCTIONS,
    PACKAGE_FORMAT,
    TSA_CERTIFICATE,
    ExportFacts,
    InclusionProof,
    badge_key_path,
    custody_document,
    entry_path,
    proof_path,
    receipt_path,
    render_json,
    segment_stem,
    seq_digits,
)
from evidence.timestamp import TimestampInfo, verify_timestamp
from evidence.verify.report import VerificationReport
from gateway.alerts.alerts import SignedAlert
from gateway.datadir import GatewayDataDir
from gateway.errors import ExportError, InvalidTextError
from gateway.export.staging import Staged, stage, staging_folder, verifies, with_mp4
from gateway.export.writer import FileRange, PackageDraft, write_package
from gateway.ledger.custody import MAX_PAGE, CustodyEntry, CustodyLog
from gateway.ledger.ledger import Ledger, SignedCheckpoint, open_ledger
from gateway.ledger.retention import deletion_notice
from gateway.naming import check_justification, check_name
from gateway.storage.catalogue import StoredIncident, StoredSegment
from gateway.timestamping.timestamper import Timestamper

KEY_ACTIONS = ("enrol", "key-rotation")
"""Custody actions that record a badge key: the package carries them to vouch for its keys."""


@dataclass(frozen=True)
class ExportRequest:
    """What to export, where, by whom and why."""

    incident_id: str
    output: Path
    actor: str
    justification: str
    badge_id: str | None = None
    """Needed only when two badges used the same incident id."""
    custodian_passphrase: bytes | None = None
    derived_mp4: bool = True
    """Whether to add the browser-playable MP4 (it needs footage PyAV can read)."""


@dataclass(frozen=True)
class ExportResult:
    """A package written, and what it holds."""

    path: Path
    incident_id: str
    badge_id: str
    first_seq: int
    last_seq: int
    size: int
    custody_index: int
    """The ledger leaf of the export's own custody entry."""
    checkpoint: SignedCheckpoint
    report: VerificationReport
    """The verifier's report on the written package (verified, or nothing was written)."""


def export_incident(
    data_dir: GatewayDataDir,
    request: ExportRequest,
    *,
    timestamper: Timestamper | None = None,
) -> ExportResult:
    """Write the court package ``request`` asks for to ``request.output`` (a new .zip file).

    ExportError (or another GatewayError, such as an altered ledger) says why nothing was
    written. ``timestamper`` (the gateway's own TSA unless given) stamps the export's
    checkpoint; the package carries its one trust anchor and its certificate.
    """
    if not request.actor.strip() or not request.justification.strip():
        raise ExportError("an export needs who exports (--actor) and why (--justification)")
    try:
        check_name(request.actor, "actor")
        check_justification(request.justification)
    except InvalidTextError as error:
        raise ExportError(str(error)) from None
    validate_incident_id(request.incident_id)
    if request.output.exists():
        raise ExportError(f"{request.output} already exists; choose a new file name")
    if not request.output.parent.is_dir():
        raise ExportError(f"the folder {request.output.parent} for the package does not exist")
    tsa = timestamper or data_dir.timestamper()
    _package_certificates(tsa)  # refuse a TSA the package cannot vouch for, before any work
    storage = data_dir.storage()
    try:
        ledger = open_ledger(data_dir, storage, timestamper=tsa)
        return _Export(data_dir, request, ledger=ledger, tsa=tsa).run()
    finally:
        storage.close()


class _Export:
    """One export, from the open ledger to the written package."""

    def __init__(
        self,
        data_dir: GatewayDataDir,
        request: ExportRequest,
        *,
        ledger: Ledger,
        tsa: Timestamper,
    ) -> None:
        storage = ledger.storage
        self.data_dir = data_dir
        self.storage = storage
        self.ledger = ledger
        self.vault = storage.vault
        self.tsa = tsa
        self.ca_certificate, self.tsa_certificate = _package_certificates(tsa)
        self.request = request
        self.catalogue = storage.catalogue
        self.registry = storage.badges
        self.custody = CustodyLog(ledger)
        self.incident = self._incident()
        self.badge_id = self.incident.badge_id
        self.segments = self._segments()
        self.keys = dict(self.registry.key_history(self.badge_id))
        self.alert = self.catalogue.alert(self.badge_id, self.incident.incident_id)
        if self.alert is not None and self.alert.ledger_index is None:
            self.alert = None
        self.digits = seq_digits(self.incident.last_seq)

    @property
    def gateway_key(self) -> SigningPublicKey:
        """The gateway's public signing key (the checkpoint and receipts verify under it)."""
        return SigningPublicKey(self.ledger.verifier.public_key)

    def run(self) -> ExportResult:
        """Stage, record, checkpoint, write."""
        custodian = CustodianPrivateKey.load(
            self.data_dir.custodian_key_path, self.request.custodian_passphrase
        )
        output = self.request.output
        with staging_folder(output.parent) as folder:
            staged = stage(folder, self.segments, self.keys, self.vault, custodian)
            if self.request.derived_mp4:
                staged = with_mp4(staged, folder / "clip.mp4")
            export = self._record_export(staged)
            checkpoint, stamp = self._checkpoint()
            draft = self._draft(staged, checkpoint, stamp)
            report = write_package(
                draft,
                self._facts(export, checkpoint),
                output,
                gateway_key=self.gateway_key,
                ca_certificate=self.ca_certificate,
            )
        incident = self.incident
        return ExportResult(
            output,
            incident.incident_id,
            incident.badge_id,
            incident.first_seq,
            incident.last_seq,
            output.stat().st_size,
            export.ledger_index,
            checkpoint,
            report,
        )

    def _incident(self) -> StoredIncident:
        incident_id, badge_id = self.request.incident_id, self.request.badge_id
        badges = (
            [badge_id]
            if badge_id is not None
            else self.catalogue.badges_with_incident(incident_id)
        )
        if len(badges) > 1:
            raise ExportError(
                f"badges {', '.join(badges)} each have an incident {incident_id}; name one "
                "with --badge"
            )
        incident = self.catalogue.incident(badges[0], incident_id) if badges else None
        if incident is None:
            raise ExportError(f"the gateway holds no incident {incident_id}")
        deleted = deletion_notice(self.storage, incident.badge_id, incident_id)
        if deleted is not None:
            raise ExportError(f"{deleted}; it cannot be exported")
        if incident.ledger_index is None or incident.complete_wall_ns is None:
            raise ExportError(
                f"incident {incident_id} is not complete yet (not every segment has arrived "
                "with an intact chain); export it once the gateway has receipted it"
            )
        return incident

    def _segments(self) -> list[StoredSegment]:
        incident = self.incident
        segments = []
        for seq in range(incident.first_seq, incident.last_seq + 1):
            stored = self.catalogue.segment(incident.badge_id, seq)
            if stored is None or stored.ledger_index is None:
                raise ExportError(
                    f"segment {seq} of incident {incident.incident_id} is missing from the "
                    "gateway database although the incident is complete"
                )
            segments.append(stored)
        return segments

    def _record_export(self, staged: Staged) -> CustodyEntry:
        """The export's custody entry, binding what the package will carry into the ledger."""
        incident = self.incident
        detail: dict[str, CanonicalValue] = {
            "format": PACKAGE_FORMAT,
            "package": self.request.output.name,
            "badge": incident.badge_id,
            "wearer": self.registry.get(incident.badge_id).wearer,
            "first_seq": incident.first_seq,
            "last_seq": incident.last_seq,
            "clip_sha256": staged.clip_sha256,
            "clip_size": staged.clip.stat().st_size,
            "derived_mp4_sha256": staged.mp4_sha256,
            "evidence_ca_sha256": sha256(self.ca_certificate.public_bytes(Encoding.DER)),
            "tsa_certificate_sha256": sha256(self.tsa_certificate.public_bytes(Encoding.DER)),
        }
        return self.custody.record(
            self.request.actor,
            "export",
            incident.incident_id,
            self.request.justification,
            detail=detail,
        )

    def _checkpoint(self) -> tuple[SignedCheckpoint, TimestampInfo]:
        """A fresh checkpoint over the export entry, with a time-stamp that verifies."""
        checkpoint = self.ledger.checkpoint()
        token = checkpoint.timestamp_token
        if token is None:
            raise ExportError(
                f"the TSA did not time-stamp checkpoint {checkpoint.number}; the export is "
                "recorded but no package was written: try again"
            )
        try:
            stamp = verify_timestamp(
                token,
                checkpoint.note_sha256,
                self.tsa.trust_anchors,
                certificates=self.tsa.certificates,
            )
        except EvidenceError as error:
            raise ExportError(f"checkpoint {checkpoint.number}'s time-stamp: {error}") from None
        return checkpoint, stamp

    def _facts(self, export: CustodyEntry, checkpoint: SignedCheckpoint) -> ExportFacts:
        incident = self.incident
        return ExportFacts(
            incident_id=incident.incident_id,
            badge_id=incident.badge_id,
            wearer=self.registry.get(incident.badge_id).wearer,
            first_seq=incident.first_seq,
            last_seq=incident.last_seq,
            segment_count=len(self.segments),
            exported_at_ns=export.at_ns,
            exported_by=export.actor,
            justification=export.justification,
            export_index=export.ledger_index,
            origin=checkpoint.checkpoint.origin,
            checkpoint_size=checkpoint.size,
            checkpoint_root=checkpoint.root,
        )

    def _draft(
        self, staged: Staged, checkpoint: SignedCheckpoint, stamp: TimestampInfo
    ) -> PackageDraft:
        draft = PackageDraft(small={}, large={}, hashes={})
        for stored in self.segments:
            stem = segment_stem(stored.seq, self.digits)
            draft.small[f"{stem}.header"] = stored.header_bytes  # the vault's, checked on staging
            draft.small[f"{stem}.sig"] = staged.signatures[stored.seq]
            offset, size = staged.ranges[stored.seq]
            draft.large[f"{stem}.ts"] = FileRange(staged.clip, offset, size)
            draft.hashes[f"{stem}.ts"] = stored.header.plaintext_sha256
        draft.large[CLIP] = FileRange(staged.clip, 0, staged.clip.stat().st_size)
        draft.hashes[CLIP] = staged.clip_sha256
        if staged.mp4 is not None and staged.mp4_sha256 is not None:
            draft.large[DERIVED_MP4] = FileRange(staged.mp4, 0, staged.mp4.stat().st_size)
            draft.hashes[DERIVED_MP4] = staged.mp4_sha256
        draft.small[INCIDENT_RECORD] = self.incident.signed_record
        if self.alert is not None:
            draft.small[ALERT_RECORD] = self.alert.signed_alert
        generations = set(staged.signers.values()) | self._record_signers()
        for generation in sorted(generations):
            draft.small[badge_key_path(self.badge_id, generation)] = self.keys[generation].pem()
        indices = self._receipts(draft, checkpoint) + self._other_entries(generations)
        indices = sorted({index for index in indices if index < checkpoint.size})
        self._ledger_files(draft, indices, checkpoint)
        draft.small[INSTRUCTIONS] = self._instructions(staged, stamp)
        return draft

    def _record_signers(self) -> set[int]:
        """The key generations that signed the incident record and the alert."""
        signed = SignedIncident.from_bytes(self.incident.signed_record, "stored incident record")
        found = set()
        for generation, key in self.keys.items():
            if verifies(partial(signed.verify, key)):
                found.add(generation)
            alert = self.alert
            if alert is not None and verifies(
                partial(SignedAlert.open, alert.signed_alert, key, "stored alert")
            ):
                found.add(generation)
        return found

    def _receipts(self, draft: PackageDraft, checkpoint: SignedCheckpoint) -> list[int]:
        """Add the receipts for the segments, the incident and the alert; return their leaves."""
        incident_id = self.incident.incident_id
        subjects: list[tuple[str, str, str | None]] = [
            ("segment", str(stored.seq), f"{stored.seq:0{self.digits}d}")
            for stored in self.segments
        ]
        subjects += [("incident", incident_id, None), ("alert", incident_id, None)]
        indices = []
        for subject, key, stem in subjects:
            receipts = self.catalogue.receipts(self.badge_id, subject, key)
            for number, receipt in enumerate(receipts, start=1):
                if receipt.ledger_index < checkpoint.size:
                    draft.small[receipt_path(subject, stem, number)] = receipt.receipt
                    indices.append(receipt.ledger_index)
        return indices

    def _other_entries(self, generations: set[int]) -> list[int]:
        """The leaves of the segments, incident, alert, custody entries and key enrolments."""
        indices = [s.ledger_index for s in self.segments if s.ledger_index is not None]
        if self.incident.ledger_index is not None:
            indices.append(self.incident.ledger_index)
        if self.alert is not None and self.alert.ledger_index is not None:
            indices.append(self.alert.ledger_index)
        indices += [entry.ledger_index for entry in self._custody(self.incident.incident_id)]
        raws = {generation: self.keys[generation].raw for generation in generations}
        for entry in self._custody(self.badge_id):
            generation = entry.detail.get("key_generation")
            if (
                entry.action in KEY_ACTIONS
                and isinstance(generation, int)
                and raws.get(generation) == entry.detail.get("public_key")
            ):
                indices.append(entry.ledger_index)
        return indices

    def _custody(self, subject: str) -> Iterator[CustodyEntry]:
        offset = 0
        while page := self.custody.entries(subject=subject, limit=MAX_PAGE, offset=offset):
            yield from page
            offset += len(page)

    def _ledger_files(
        self, draft: PackageDraft, indices: Sequence[int], checkpoint: SignedCheckpoint
    ) -> None:
        custody = []
        for index in indices:
            draft.small[entry_path(index)] = self.ledger.leaf(index)
            proof = self.ledger.inclusion_proof(index, checkpoint.size)
            draft.small[proof_path(index)] = InclusionProof(
                index, checkpoint.size, tuple(proof)
            ).to_text()
            entry = self.ledger.entry(index)
            if entry.kind == "custody":
                custody.append((index, entry))
        draft.small[CUSTODY] = render_json(custody_document(self.incident.incident_id, custody))
        draft.small[CHECKPOINT_NOTE] = checkpoint.note
        draft.small[CHECKPOINT_TOKEN] = checkpoint.timestamp_token or b""
        draft.small[GATEWAY_KEY] = self.gateway_key.pem()
        draft.small[GATEWAY_VKEY] = (format_vkey(self.ledger.verifier) + "\n").encode("ascii")
        draft.small[CA_CERTIFICATE] = self.ca_certificate.public_bytes(Encoding.PEM)
        draft.small[TSA_CERTIFICATE] = self.tsa_certificate.public_bytes(Encoding.PEM)

    def _instructions(self, staged: Staged, stamp: TimestampInfo) -> bytes:
        return render_instructions(
            InstructionFacts(
                incident_id=self.incident.incident_id,
                badge_id=self.badge_id,
                segments=[
                    SignedSegment(
                        segment_stem(stored.seq, self.digits),
                        badge_key_path(self.badge_id, staged.signers[stored.seq]),
                        self.keys[staged.signers[stored.seq]].algorithm,
                    )
                    for stored in self.segments
                ],
                timestamp_seconds=int(stamp.gen_time.timestamp()),
            )
        )


def _package_certificates(tsa: Timestamper) -> tuple[x509.Certificate, x509.Certificate]:
    """The CA and TSA certificates a package carries for its time-stamp (decision 1204):
    ExportError unless the TSA has exactly one trust anchor and names its certificate."""
    anchors, certificates = tsa.trust_anchors, tsa.certificates
    if len(anchors) != 1 or not certificates:
        raise ExportError(
            f"a package carries one CA and the TSA's certificate, but this TSA has "
            f"{len(anchors)} trust anchors and {len(certificates)} certificates; export with "
            "the gateway's own TSA"
        )
    return anchors[0], certificates[0]
