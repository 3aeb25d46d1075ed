"""Reading a package's files, from its zip or from the folder it was unpacked into.

Large files are read in blocks, never whole. A member stored uncompressed (as packages are
written) is read straight from the zip file at its offset: the SHA-256 the verifier computes
is a stronger check than the zip's CRC-32, which would cost a second pass over every byte
(decision 1201). Compressed members, from a package someone re-zipped, go through zipfile.
"""

from __future__ import annotations

import os
import stat
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Protocol

from evidence.errors import FormatError, PackageError

BLOCK_SIZE = 1 << 20
"""Bytes per read when streaming a file."""
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_SIGNATURE = b"PK\x03\x04"
_EMPTY_ZIP_SIGNATURE = b"PK\x05\x06"
_UTF8_NAME_FLAG = 0x800
_ENCRYPTED_FLAG = 0x1
_UNIX = 3
"""The zip "made by" system whose upper 16 bits of external attributes hold a Unix mode."""
MEMBER_LIMIT = 1 << 34
"""The most a compressed zip member may declare (16 GiB): more than any incident's video."""
DEFLATE_RATIO_LIMIT = 1032
"""Deflate cannot inflate one byte into more than about 1032: a member declaring more from
its compressed size is a lie or another method's bomb, refused before anything is inflated."""
# What zipfile raises on a damaged zip; "version 8.4" in a garbled header is NotImplementedError.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    OSError,
    ValueError,
    EOFError,
    NotImplementedError,
    struct.error,
)


class FileStream(Protocol):
    """One package file opened for reading from its start."""

    def read(self, size: int) -> bytes:
        """The next ``size`` bytes, fewer only at the end; FormatError if they cannot be read."""
        ...

    def close(self) -> None:
        """Stop reading."""
        ...


class PackageFiles(Protocol):
    """The files of one package, by their '/'-separated path inside it."""

    location: str
    """What was opened (a zip file or a folder), for messages."""
    problems: list[tuple[str, str]]
    """(path, sentence) for every entry that is not a plain file with a safe name."""

    def names(self) -> list[str]:
        """The paths of the package's plain files, sorted."""
        ...

    def size(self, name: str) -> int:
        """The size of file ``name`` in bytes, as its listing gives it."""
        ...

    def open(self, name: str) -> FileStream:
        """File ``name`` for reading; FormatError if it cannot be opened."""
        ...

    def close(self) -> None:
        """Release the open file, if any."""
        ...


def blocks(files: PackageFiles, name: str) -> Iterator[bytes]:
    """File ``name`` of ``files`` in blocks of BLOCK_SIZE bytes (the last may be shorter)."""
    stream = files.open(name)
    try:
        while block := stream.read(BLOCK_SIZE):
            yield block
    finally:
        stream.close()


def read_whole(files: PackageFiles, name: str, limit: int) -> bytes:
    """All of file ``name``; FormatError if it holds more than ``limit`` bytes.

    A file whose listing declares more is refused before a byte of it is read (or inflated).
    """
    if files.size(name) > limit:
        raise FormatError(
            f"{name} declares {files.size(name)} bytes, more than the {limit} such a file can "
            "have; it was not read"
        )
    stream = files.open(name)
    try:
        data = stream.read(limit + 1)
    finally:
        stream.close()
    if len(data) > limit:
        raise FormatError(f"{name} is larger than the {limit} bytes such a file can have")
    return data


def open_package(path: Path) -> PackageFiles:
    """Open a package zip or unpacked folder.

    PackageError when ``path`` is missing or neither a folder nor a zip (nothing to verify);
    FormatError when it is a zip too damaged to list (a failed verification).
    """
    if path.is_dir():
        return DirectoryPackage(path)
    try:
        with path.open("rb") as stream:
            start = stream.read(4)
    except FileNotFoundError:
        raise PackageError(f"{path} does not exist") from None
    except OSError as error:
        raise PackageError(f"{path} cannot be read: {error.strerror}") from None
    if start not in (_LOCAL_SIGNATURE, _EMPTY_ZIP_SIGNATURE):
        raise PackageError(f"{path} is not a zip file or a folder")
    return ZipPackage(path)


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot be the path of a package file, or None."""
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in parts):
        return "is not a plain relative path"
    if any(not part.isprintable() for part in parts):
        return "holds control characters"
    return None


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why zip member ``info`` is refused before it is read: a link, a folder, or a bomb."""
    mode = info.external_attr >> 16 if info.create_system == _UNIX else 0
    if stat.S_ISLNK(mode):
        return "is a symbolic link, not a file: a package holds only plain files"
    if info.is_dir() or stat.S_ISDIR(mode):
        return "is a folder entry: a package holds only plain files"
    if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
        return "is a special file, not a plain file"
    if info.compress_type != zipfile.ZIP_STORED:
        if info.file_size > MEMBER_LIMIT:
            return f"declares {info.file_size} bytes, more than the {MEMBER_LIMIT} allowed"
        if info.file_size > DEFLATE_RATIO_LIMIT * max(info.compress_size, 1):
            return (
                f"declares {info.file_size} bytes from {info.compress_size} compressed: "
                "a zip bomb, not inflated"
            )
    return None


class ZipPackage:
    """A package zip, its uncompressed members read directly at their offsets."""

    def __init__(self, path: Path) -> None:
        """List the zip's members; FormatError if its directory is damaged."""
        self.location = str(path)
        self.problems: list[tuple[str, str]] = []
        try:
            self._zip = zipfile.ZipFile(path)
        except (*_ZIP_ERRORS, zipfile.LargeZipFile) as error:
            raise FormatError(f"{path} is a damaged zip file: {error}") from None
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._file_size = os.fstat(self._fd).st_size
        self._members: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            name = info.filename
            problem = _name_problem(name.rstrip("/") if info.is_dir() else name)
            if problem is None:
                problem = _member_problem(info)
            if problem is None and name in self._members:
                problem = "appears twice in the zip"
            if problem is not None:
                self.problems.append((name, f"the zip entry {name!r} {problem}"))
                continue
            self._members[name] = info

    def names(self) -> list[str]:
        """The member paths, sorted."""
        return sorted(self._members)

    def size(self, name: str) -> int:
        """The uncompressed size of member ``name``."""
        return self._members[name].file_size

    def open(self, name: str) -> FileStream:
        """Member ``name``: read straight from the zip file if stored, else through zipfile."""
        info = self._members[name]
        if info.compress_type == zipfile.ZIP_STORED:
            return _StoredMember(self._fd, self._data_offset(info), info.file_size, name)
        try:
            return _CompressedMember(self._zip.open(info), name, info.file_size)
        except _ZIP_ERRORS as error:
            raise FormatError(f"zip member {name} cannot be read: {error}") from None

    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        """Where the member's bytes start, after checking its local header matches the directory."""
        where = f"zip member {info.filename}"
        header = os.pread(self._fd, _LOCAL_HEADER.size, info.header_offset)
        if len(header) < _LOCAL_HEADER.size:
            raise FormatError(f"{where}: its local header lies beyond the end of the zip")
        signature, _, flags, method, _, _, _, _, _, name_size, extra_size = _LOCAL_HEADER.unpack(
            header
        )
        if signature != _LOCAL_SIGNATURE or method != zipfile.ZIP_STORED:
            raise FormatError(f"{where}: its local header is damaged")
        if flags & _ENCRYPTED_FLAG:
            raise FormatError(f"{where} is encrypted")
        encoding = "utf-8" if info.flag_bits & _UTF8_NAME_FLAG else "cp437"
        stored_name = os.pread(self._fd, name_size, info.header_offset + _LOCAL_HEADER.size)
        if stored_name != info.orig_filename.encode(encoding, "replace"):
            raise FormatError(f"{where}: its local header names another file")
        start = int(info.header_offset + _LOCAL_HEADER.size + name_size + extra_size)
        if info.compress_size != info.file_size or start + info.file_size > self._file_size:
            raise FormatError(f"{where}: its bytes lie beyond the end of the zip (truncated)")
        return start

    def close(self) -> None:
        """Close the zip."""
        self._zip.close()
        os.close(self._fd)


class DirectoryPackage:
    """A package unpacked into a folder."""

    def __init__(self, root: Path) -> None:
        """List the plain files under ``root``; links and special files are problems."""
        self.location = str(root)
        self.root = root
        self.problems: list[tuple[str, str]] = []
        self._sizes: dict[str, int] = {}
        for directory, subdirectories, files in os.walk(root):
            relative = Path(directory).relative_to(root)
            for name in sorted(subdirectories):
                if (Path(directory) / name).is_symlink():
                    path = (relative / name).as_posix()
                    self.problems.append((path, f"{path} is a link, not a folder of the package"))
            for name in files:
                path = (relative / name).as_posix()
                mode = os.lstat(Path(directory) / name)
                if not stat.S_ISREG(mode.st_mode):
                    self.problems.append((path, f"{path} is a link or special file"))
                    continue
                self._sizes[path] = mode.st_size

    def names(self) -> list[str]:
        """The file paths, sorted."""
        return sorted(self._sizes)

    def size(self, name: str) -> int:
        """The size of ``name`` when the folder was listed."""
        return self._sizes[name]

    def open(self, name: str) -> FileStream:
        """File ``name`` (not following links)."""
        try:
            descriptor = os.open(self.root / name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as error:
            raise FormatError(f"{name} cannot be opened: {error.strerror}") from None
        return _PlainFile(descriptor, name)

    def close(self) -> None:
        """Nothing to release."""


class _StoredMember:
    """An uncompressed zip member, read with pread at its offset in the zip file."""

    def __init__(self, descriptor: int, start: int, size: int, name: str) -> None:
        self._fd = descriptor
        self._position = start
        self._remaining = size
        self._name = name

    def read(self, size: int) -> bytes:
        wanted = min(size, self._remaining)
        data = os.pread(self._fd, wanted, self._position) if wanted else b""
        if len(data) < wanted:
            raise FormatError(f"zip member {self._name} ends early: the zip is truncated")
        self._position += wanted
        self._remaining -= wanted
        return data

    def close(self) -> None:
        self._remaining = 0


class _CompressedMember:
    """A compressed zip member, inflated block by block (and CRC-checked) by zipfile.

    Never more than the member's declared size is inflated: a member that would inflate to
    more is refused at that point, whatever its directory entry claims.
    """

    def __init__(self, stream: IO[bytes], name: str, declared: int) -> None:
        self._stream = stream
        self._name = name
        self._remaining = declared

    def read(self, size: int) -> bytes:
        try:
            data = self._stream.read(min(size, self._remaining + 1))
        except _ZIP_ERRORS as error:
            raise FormatError(f"zip member {self._name} cannot be read: {error}") from None
        if len(data) > self._remaining:
            raise FormatError(f"zip member {self._name} inflates to more than it declares")
        self._remaining -= len(data)
        return data

    def close(self) -> None:
        self._stream.close()


class _PlainFile:
    """A file of an unpacked package."""

    def __init__(self, descriptor: int, name: str) -> None:
        self._fd = descriptor
        self._name = name

    def read(self, size: int) -> bytes:
        parts = []
        while size > 0:
            try:
                data = os.read(self._fd, size)
            except OSError as error:
                raise FormatError(f"{self._name} cannot be read: {error.strerror}") from None
            if not data:
                break
            parts.append(data)
            size -= len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
