"""The offline verifier: does an evidence package prove an authentic, complete clip?

``verify_package`` reads a package (its zip, or the folder it was unpacked into) once,
hashing every byte once, and runs every check of ``evidence.package.layout.Check``: files against
both listings, badge keys against the ledger, each segment's signature, plaintext and chain
link, the incident record, the ledger entries and their inclusion proofs, the gateway's
checkpoint signature, the RFC 3161 time-stamp, receipts and custody entries, the export's
own entry, and that manifest.json, custody.json and VERIFY.txt say exactly what the rest
proves. It never raises for a bad package: everything wrong is a finding in the report.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from evidence.errors import FormatError
from evidence.hashing import sha256
from evidence.keys import SigningPublicKey
from evidence.package.files import PackageFiles, open_package
from evidence.package.instructions import InstructionFacts, SignedSegment, render_instructions
from evidence.package.layout import (
    INSTRUCTIONS,
    MANIFEST,
    PACKAGE_FORMAT,
    Check,
    ExportFacts,
    FileRecord,
    build_manifest,
    render_json,
    role_of,
)
from evidence.verify.custody import ExportEntry, check_custody, check_export, check_receipts
from evidence.verify.files import PackageContents, read_package
from evidence.verify.findings import Findings
from evidence.verify.ledger import LedgerView, check_pins, datetime_ns, read_ledger
from evidence.verify.media import MediaView, read_media
from evidence.verify.report import Summary, VerificationReport

__all__ = ["VerificationReport", "verify_package"]

log = logging.getLogger(__name__)


def verify_package(
    path: Path,
    *,
    gateway_key: SigningPublicKey | None = None,
    ca_certificate: x509.Certificate | None = None,
) -> VerificationReport:
    """Verify the package zip or unpacked folder at ``path``.

    ``gateway_key`` and ``ca_certificate``, when given, are the values the court trusts
    (from the hospital, not from the package); the package's must match them. Raises
    PackageError only when ``path`` is not a package at all (missing, not a zip or folder).
    """
    findings = Findings()
    try:
        files = open_package(path)
    except FormatError as error:  # a zip too damaged to list: a failed verification
        findings.fail(Check.PACKAGE, str(error))
        return VerificationReport(str(path), tuple(findings.items), {}, Summary())
    try:
        summary = _verify(files, findings, gateway_key, ca_certificate)
    except Exception as error:  # a verifier bug must still end in a report, not a traceback
        log.exception("verification of %s stopped", path)
        findings.fail(
            Check.PACKAGE, f"the verifier could not finish: {type(error).__name__}: {error}"
        )
        summary = Summary()
    finally:
        files.close()
    examined = {check.value: count for check, count in findings.examined.items()}
    return VerificationReport(files.location, tuple(findings.items), examined, summary)


def _verify(
    files: PackageFiles,
    findings: Findings,
    gateway_key: SigningPublicKey | None,
    ca_certificate: x509.Certificate | None,
) -> Summary:
    contents = read_package(files, findings)
    ledger = read_ledger(contents, findings)
    media = read_media(contents, ledger, findings)
    check_receipts(contents, ledger, media, findings)
    export = check_custody(contents, ledger, media, findings)
    if export is not None:
        check_export(contents, ledger, media, export, findings)
    _check_manifest(contents, _export_facts(ledger, media, export), findings)
    _check_instructions(contents, ledger, media, findings)
    pinned = check_pins(ledger, findings, gateway_key=gateway_key, ca_certificate=ca_certificate)
    return _summary(ledger, media, export, pinned)


def _export_facts(
    ledger: LedgerView, media: MediaView, export: ExportEntry | None
) -> ExportFacts | None:
    record, checkpoint = media.record, ledger.checkpoint
    if record is None or checkpoint is None or export is None:
        return None
    wearer = export.detail.get("wearer")
    return ExportFacts(
        incident_id=record.incident_id,
        badge_id=record.badge_id,
        wearer=wearer if isinstance(wearer, str) else "",
        first_seq=record.first_seq,
        last_seq=record.last_seq,
        segment_count=len(media.stems),
        exported_at_ns=export.entry.at_ns,
        exported_by=export.text("actor"),
        justification=export.text("justification"),
        export_index=export.index,
        origin=checkpoint.origin,
        checkpoint_size=checkpoint.size,
        checkpoint_root=checkpoint.root,
    )


def _check_manifest(contents: PackageContents, facts: ExportFacts | None, f: Findings) -> None:
    """manifest.json in its one layout, saying exactly what the verified files say."""
    manifest = contents.manifest
    if manifest is None:
        return
    f.examine(Check.MANIFEST)
    if render_json(manifest) != contents.small[MANIFEST]:
        f.fail(Check.MANIFEST, "it is not laid out as the exporter writes it", file=MANIFEST)
    if manifest.get("format") != PACKAGE_FORMAT:
        f.fail(Check.MANIFEST, f"its format is not {PACKAGE_FORMAT}", file=MANIFEST)
        return
    if facts is None:
        return
    records = [FileRecord(path, size, digest) for path, (size, digest) in contents.listed.items()]
    roles = {record.path: role_of(record.path) or "" for record in records}
    expected = json.loads(render_json(build_manifest(facts, records, roles)))
    for key in sorted(set(expected) | set(manifest)):
        if manifest.get(key) != expected.get(key):
            f.fail(
                Check.MANIFEST,
                f"its {key!r} differs from what the verified files and ledger entries say",
                file=MANIFEST,
            )


def _check_instructions(
    contents: PackageContents, ledger: LedgerView, media: MediaView, f: Findings
) -> None:
    """VERIFY.txt is the standard text, so no check can have been edited out of it."""
    data = contents.small.get(INSTRUCTIONS)
    if data is None:
        f.fail(Check.FILE_LIST, "the package has no VERIFY.txt", file=INSTRUCTIONS)
        return
    record, stamp = media.record, ledger.timestamp
    if record is None or stamp is None or set(media.signers) != set(media.stems):
        return  # what is missing has its own finding; the text cannot be rebuilt without it
    f.examine(Check.INSTRUCTIONS)
    facts = InstructionFacts(
        incident_id=record.incident_id,
        badge_id=record.badge_id,
        segments=[
            SignedSegment(
                media.stems[seq], media.signers[seq], media.keys[media.signers[seq]].algorithm
            )
            for seq in sorted(media.stems)
        ],
        timestamp_seconds=int(stamp.gen_time.timestamp()),
    )
    if render_instructions(facts) != data:
        f.fail(
            Check.INSTRUCTIONS, "it is not the standard text for this package", file=INSTRUCTIONS
        )


def _summary(
    ledger: LedgerView, media: MediaView, export: ExportEntry | None, pinned: Mapping[str, bool]
) -> Summary:
    record = media.record
    entries = [media.segment_entries[seq] for seq in sorted(media.segment_entries)]
    capture = [
        tuple(entry.body.get(field) for field in ("capture_start_ns", "capture_end_ns"))
        for entry in entries
    ]
    errors = [entry.body.get("capture_error_ns") for entry in entries]
    corrected = (
        bool(entries)
        and all(isinstance(value, int) for pair in capture for value in pair)
        and all(isinstance(value, int) for value in errors)
    )
    headers = [media.headers[seq] for seq in sorted(media.headers)]
    start: object = capture[0][0] if corrected else (headers[0].wall_start_ns if headers else None)
    end: object = capture[-1][1] if corrected else (headers[-1].wall_end_ns if headers else None)
    received = [entry.body.get("received_wall_ns") for entry in entries]
    stamp = ledger.timestamp
    ca = ledger.ca_certificate
    return Summary(
        incident_id=None if record is None else record.incident_id,
        badge_id=None if record is None else record.badge_id,
        wearer=None if export is None else _text(export.detail.get("wearer")),
        first_seq=None if record is None else record.first_seq,
        last_seq=None if record is None else record.last_seq,
        segments=len(media.stems),
        capture_start_ns=start if isinstance(start, int) else None,
        capture_end_ns=end if isinstance(end, int) else None,
        capture_error_ns=max(v for v in errors if isinstance(v, int)) if corrected else None,
        capture_clock="gateway" if corrected else "badge",
        received_ns=max((v for v in received if isinstance(v, int)), default=None),
        sealed_ns=None if stamp is None else datetime_ns(stamp.gen_time),
        sealed_accuracy_ns=(
            None
            if stamp is None or stamp.accuracy is None
            else round(stamp.accuracy.total_seconds() * 1e9)
        ),
        tsa_name=None if stamp is None else stamp.tsa_name,
        exported_at_ns=None if export is None else export.entry.at_ns,
        exported_by=None if export is None else export.text("actor"),
        justification=None if export is None else export.text("justification"),
        gateway_vkey=ledger.vkey,
        ca_fingerprint=None if ca is None else _fingerprint(ca),
        pinned_gateway_key=pinned["gateway_key"],
        pinned_ca=pinned["ca"],
        badge_key_origins=tuple(
            sorted(
                {media.origins[path] for path in media.signers.values() if path in media.origins}
            )
        ),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _fingerprint(certificate: x509.Certificate) -> str:
    """``AB:CD:...``: the SHA-256 of the DER certificate, as openssl prints fingerprints."""
    return ":".join(f"{byte:02X}" for byte in sha256(certificate.public_bytes(Encoding.DER)))
