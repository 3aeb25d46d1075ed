"""Writing a court package: small files in memory, large ones from disk, one zip, checked whole.

The writer lists every file with its size and SHA-256, derives manifest.json and SHA256SUMS
from that list, writes the zip beside its destination (every member stored uncompressed, so
the verifier reads members at their offsets and video needs no inflating), verifies it as a
court would, and only then renames it into place.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from evidence.durable import fsync_directory
from evidence.keys import SigningPublicKey
from evidence.package.layout import (
    CHECKSUMS,
    INSTRUCTIONS,
    MANIFEST,
    ExportFacts,
    FileRecord,
    build_manifest,
    format_checksums,
    render_json,
    role_of,
)
from evidence.verify import verify_package
from evidence.verify.report import VerificationReport
from gateway.errors import ExportError

_COPY_BLOCK = 1 << 20
_FILE_ATTRIBUTES = 0o100644 << 16  # a regular file, rw-r--r--, in the zip's Unix attributes
_FIRST = (INSTRUCTIONS, MANIFEST, CHECKSUMS)
"""Written first, so whoever opens the zip sees the instructions at the top."""


@dataclass(frozen=True)
class FileRange:
    """``size`` bytes of the file at ``path`` from ``offset``: a package file kept on disk."""

    path: Path
    offset: int
    size: int


@dataclass
class PackageDraft:
    """The files of a package before it is written: bytes in memory, or ranges on disk."""

    small: dict[str, bytes]
    large: dict[str, FileRange]
    hashes: dict[str, bytes]
    """SHA-256 of each large file (computed, or checked, while it was made)."""

    def records(self) -> list[FileRecord]:
        """Every file's path, size and SHA-256."""
        records = [
            FileRecord(path, len(data), hashlib.sha256(data).digest())
            for path, data in self.small.items()
        ]
        records += [
            FileRecord(path, part.size, self.hashes[path]) for path, part in self.large.items()
        ]
        return records


def write_package(
    draft: PackageDraft,
    facts: ExportFacts,
    output: Path,
    *,
    gateway_key: SigningPublicKey,
    ca_certificate: x509.Certificate,
) -> VerificationReport:
    """Add manifest.json and SHA256SUMS, write the zip, verify it, then move it to ``output``.

    ExportError (and nothing at ``output``) if the zip does not verify against the gateway's
    own key and CA.
    """
    records = draft.records()
    roles = {record.path: role_of(record.path) or "" for record in records}
    manifest = render_json(build_manifest(facts, records, roles))
    draft.small[MANIFEST] = manifest
    records.append(FileRecord(MANIFEST, len(manifest), hashlib.sha256(manifest).digest()))
    draft.small[CHECKSUMS] = format_checksums(records)
    temporary = output.with_name(f".{output.name}.{secrets.token_hex(6)}.tmp")
    try:
        _write_zip(draft, temporary, datetime.fromtimestamp(facts.exported_at_ns / 1e9, UTC))
        report = verify_package(temporary, gateway_key=gateway_key, ca_certificate=ca_certificate)
        if not report.verified:
            problems = "; ".join(finding.line() for finding in report.findings[:5])
            raise ExportError(f"the package made for {output} does not verify: {problems}")
        os.replace(temporary, output)
    except OSError as error:
        raise ExportError(f"cannot write the package {output}: {error}") from None
    finally:
        temporary.unlink(missing_ok=True)
    fsync_directory(output.parent)
    return report


def _order(paths: Sequence[str]) -> list[str]:
    first = [path for path in _FIRST if path in paths]
    return first + sorted(path for path in paths if path not in _FIRST)


def _write_zip(draft: PackageDraft, target: Path, moment: datetime) -> None:
    stamp = (
        max(moment.year, 1980),
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
    )
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(descriptor, "wb") as raw:
        with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zip_:
            for path in _order([*draft.small, *draft.large]):
                info = zipfile.ZipInfo(path, date_time=stamp)
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = _FILE_ATTRIBUTES
                if path in draft.small:
                    zip_.writestr(info, draft.small[path])
                else:
                    _copy_range(zip_, info, draft.large[path])
        raw.flush()
        os.fsync(raw.fileno())


def _copy_range(zip_: zipfile.ZipFile, info: zipfile.ZipInfo, part: FileRange) -> None:
    info.file_size = part.size  # lets zipfile choose ZIP64 headers before writing
    with part.path.open("rb") as source, zip_.open(info, "w") as member:
        source.seek(part.offset)
        remaining = part.size
        while remaining:
            block = source.read(min(_COPY_BLOCK, remaining))
            if not block:
                raise ExportError(f"{part.path} ended before the bytes of {info.filename}")
            member.write(block)
            remaining -= len(block)
