"""Verifying a package's files: every byte hashed once, against manifest.json and SHA256SUMS.

Small files are read whole (bounded) and kept for the checks that parse them. Segments are
read in blocks, and clip.ts in step with them: each block of clip.ts is compared with the
segment bytes it must equal, so one pass hashes every segment (the hash its signed header
must give), hashes clip.ts and proves it is the segments joined.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from evidence.errors import FormatError
from evidence.package.files import BLOCK_SIZE, PackageFiles, blocks, read_whole
from evidence.package.layout import (
    CHECKSUMS,
    CLIP,
    MANIFEST,
    STREAMED_ROLES,
    Check,
    FileRecord,
    hex_digest,
    number_in,
    parse_checksums,
    role_of,
)
from evidence.verify.findings import Findings

SMALL_FILE_LIMIT = 16 * 1024 * 1024
"""The largest header, record, key, proof or listing a package may hold (they are tiny)."""
SMALL_FILES_LIMIT = 256 * 1024 * 1024
"""The most all those small files may hold together (a package of 10 000 segments needs
about 40 MiB), so that no package can make the verifier hold gigabytes in memory."""


@dataclass
class PackageContents:
    """What the file checks learnt: each file's role, size and SHA-256, and the small files."""

    roles: dict[str, str] = field(default_factory=dict)
    """Every plain file with a package role, by path."""
    records: dict[str, FileRecord] = field(default_factory=dict)
    """The size and SHA-256 computed for every file that could be read."""
    small: dict[str, bytes] = field(default_factory=dict)
    """The bytes of every file that is not a segment, the clip or the derived video."""
    checksums: dict[str, bytes] | None = None
    """SHA256SUMS as path -> SHA-256, once it is read and well-formed."""
    manifest: dict[str, Any] | None = None
    listed: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    """The manifest's files as path -> (size, SHA-256)."""
    clip_differences: dict[str, int] = field(default_factory=dict)
    """For a segment whose bytes clip.ts does not repeat: the first byte of the segment
    where the two differ (the segment's own length when clip.ts ends inside it)."""

    def paths(self, role: str) -> list[str]:
        """The files with ``role``, in path order (segments: in seq order)."""
        return sorted(path for path, found in self.roles.items() if found == role)


def read_package(files: PackageFiles, findings: Findings) -> PackageContents:
    """Read and hash every file once and check both listings; record what does not hold."""
    contents = PackageContents()
    for path, problem in files.problems:
        findings.fail(Check.PACKAGE, problem, file=path)
    for path in files.names():
        role = role_of(path)
        if role is None:
            findings.fail(Check.FILE_LIST, "no package file has this name", file=path)
        else:
            contents.roles[path] = role
    budget = SMALL_FILES_LIMIT
    for path, role in contents.roles.items():
        if role in STREAMED_ROLES:
            continue
        if files.size(path) > budget:
            findings.fail(
                Check.PACKAGE,
                f"the package's small files hold more than {SMALL_FILES_LIMIT} bytes in all; "
                "this one is only hashed",
                file=path,
            )
            _stream(files, path, contents, findings)
            continue
        _read_small(files, path, contents, findings)
        budget -= len(contents.small.get(path, b""))
    _stream_media(files, contents, findings)
    for path in contents.paths("derived"):
        _stream(files, path, contents, findings)
    _read_listings(contents, findings)
    _compare_listings(contents, findings)
    return contents


def _read_small(files: PackageFiles, path: str, contents: PackageContents, f: Findings) -> None:
    try:
        data = read_whole(files, path, SMALL_FILE_LIMIT)
    except FormatError as error:
        f.fail(Check.PACKAGE, str(error), file=path)
        return
    contents.small[path] = data
    contents.records[path] = FileRecord(path, len(data), hashlib.sha256(data).digest())


def _stream(files: PackageFiles, path: str, contents: PackageContents, f: Findings) -> None:
    digest, size = hashlib.sha256(), 0
    try:
        for block in blocks(files, path):
            digest.update(block)
            size += len(block)
    except FormatError as error:
        f.fail(Check.PACKAGE, str(error), file=path)
        return
    contents.records[path] = FileRecord(path, size, digest.digest())


class _ClipInStep:
    """clip.ts read alongside the segments: hashed once, compared with each segment block."""

    def __init__(self, files: PackageFiles) -> None:
        self._stream = files.open(CLIP)
        self.digest = hashlib.sha256()
        self.size = 0
        self.difference: str | None = None

    def follow(self, block: bytes, segment: str, offset: int) -> int | None:
        """Read as many clip bytes as ``block`` holds and compare them with it.

        Returns the first position within ``block`` where clip.ts differs, if it does.
        """
        data = self._stream.read(len(block))
        self.digest.update(data)
        self.size += len(data)
        if data == block:
            return None
        at = _first_difference(data, block)
        if self.difference is None:
            where = self.size - len(data) + at
            self.difference = (
                f"it differs from the segments joined in order from byte {where} "
                f"(byte {offset + at} of {segment})"
                if at < len(data)
                else f"it ends at byte {self.size}, inside {segment} (its byte {offset + at})"
            )
        return at

    def finish(self) -> None:
        """Hash whatever clip.ts holds beyond the segments."""
        extra = 0
        while data := self._stream.read(BLOCK_SIZE):
            self.digest.update(data)
            self.size += len(data)
            extra += len(data)
        self._stream.close()
        if extra and self.difference is None:
            self.difference = f"it holds {extra} bytes more than the segments joined"


def _first_difference(first: bytes, second: bytes) -> int:
    """The first index where ``first`` and ``second`` differ (the shorter's length if one is
    the other's start), found by halving so that even a 1 MiB block costs a few compares."""
    low, high = 0, min(len(first), len(second))
    if first[:high] == second[:high]:
        return high
    while high - low > 1:  # first[:low] == second[:low]; first[:high] != second[:high]
        middle = (low + high) // 2
        if first[low:middle] == second[low:middle]:
            low = middle
        else:
            high = middle
    return low


def _stream_media(files: PackageFiles, contents: PackageContents, f: Findings) -> None:
    """Hash each segment and clip.ts in one pass, comparing clip.ts with the segments."""
    segments = sorted(contents.paths("segment"), key=number_in)
    clip: _ClipInStep | None = None
    if CLIP in contents.roles:
        try:
            clip = _ClipInStep(files)
        except FormatError as error:
            f.fail(Check.PACKAGE, str(error), file=CLIP)
    for path in segments:
        digest, size = hashlib.sha256(), 0
        try:
            for block in blocks(files, path):
                digest.update(block)
                if clip is not None:
                    at = clip.follow(block, path, size)
                    if at is not None and path not in contents.clip_differences:
                        contents.clip_differences[path] = size + at
                size += len(block)
        except FormatError as error:
            f.fail(Check.PACKAGE, str(error), file=path)
            continue
        contents.records[path] = FileRecord(path, size, digest.digest())
    if clip is None:
        return
    try:
        clip.finish()
    except FormatError as error:
        f.fail(Check.PACKAGE, str(error), file=CLIP)
        return
    contents.records[CLIP] = FileRecord(CLIP, clip.size, clip.digest.digest())
    f.examine(Check.CLIP)
    if clip.difference is not None:
        f.fail(Check.CLIP, clip.difference, file=CLIP)


def _read_listings(contents: PackageContents, f: Findings) -> None:
    if CHECKSUMS not in contents.small:
        f.fail(Check.FILE_LIST, "the package has no SHA256SUMS", file=CHECKSUMS)
    else:
        try:
            contents.checksums = parse_checksums(contents.small[CHECKSUMS])
        except FormatError as error:
            f.fail(Check.FILE_LIST, str(error), file=CHECKSUMS)
    if MANIFEST not in contents.small:
        f.fail(Check.FILE_LIST, "the package has no manifest.json", file=MANIFEST)
        return
    try:
        manifest = json.loads(contents.small[MANIFEST])
    except (ValueError, RecursionError) as error:
        f.fail(Check.MANIFEST, f"manifest.json is not JSON ({error})", file=MANIFEST)
        return
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        f.fail(Check.MANIFEST, "manifest.json has no list of files", file=MANIFEST)
        return
    contents.manifest = manifest


def manifest_files(manifest: dict[str, Any], f: Findings) -> dict[str, tuple[int, bytes]]:
    """The manifest's files as path -> (size, SHA-256); malformed entries become findings."""
    listed: dict[str, tuple[int, bytes]] = {}
    for number, item in enumerate(manifest.get("files", []), start=1):
        path = item.get("path") if isinstance(item, dict) else None
        size = item.get("size") if isinstance(item, dict) else None
        digest = hex_digest(item.get("sha256")) if isinstance(item, dict) else None
        if not isinstance(path, str) or type(size) is not int or size < 0 or digest is None:
            f.fail(
                Check.MANIFEST, f"file entry {number} lacks a path, size or SHA-256", file=MANIFEST
            )
        elif path in listed:
            f.fail(Check.MANIFEST, f"lists {path} twice", file=MANIFEST)
        else:
            listed[path] = (size, digest)
    return listed


def _compare_listings(contents: PackageContents, f: Findings) -> None:
    """Every file in both listings with the same hash, and no file in neither."""
    sums = contents.checksums or {}
    listed = {} if contents.manifest is None else manifest_files(contents.manifest, f)
    contents.listed = listed
    have_sums = contents.checksums is not None
    for path in sorted(contents.roles):
        if path == CHECKSUMS:
            continue
        if have_sums and path not in sums:
            f.fail(Check.FILE_LIST, "the file is not listed in SHA256SUMS", file=path)
        if contents.manifest is not None and path != MANIFEST and path not in listed:
            f.fail(Check.FILE_LIST, "the file is not listed in manifest.json", file=path)
    for path in sorted(set(sums) - set(contents.roles)):
        f.fail(Check.FILE_LIST, "SHA256SUMS lists this file, but it is missing", file=path)
    for path in sorted(set(listed) - set(contents.roles)):
        f.fail(Check.FILE_LIST, "manifest.json lists this file, but it is missing", file=path)
    for path, record in sorted(contents.records.items()):
        f.examine(Check.FILE_HASH)
        if path in sums and sums[path] != record.sha256:
            f.fail(
                Check.FILE_HASH,
                f"its SHA-256 is {record.sha256.hex()}, not the {sums[path].hex()} SHA256SUMS "
                "gives",
                file=path,
            )
        if path in listed and listed[path] != (record.size, record.sha256):
            size, digest = listed[path]
            f.fail(
                Check.FILE_HASH,
                f"it holds {record.size} bytes with SHA-256 {record.sha256.hex()}, not the "
                f"{size} bytes with SHA-256 {digest.hex()} manifest.json gives",
                file=path,
            )
