"""The export's staging: the incident's footage checked as stored, decrypted beside the package.

Each segment is read from the vault and refused unless it is the file that was stored
(its SHA-256, size and header) and verifies under a key its badge has had; its plaintext
goes into one clip, whose ranges and digest the package records. The staging folder is
removed whatever happens.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from evidence.errors import EvidenceError
from evidence.hashing import sha256, sha256_file
from evidence.keys import CustodianPrivateKey, SigningPublicKey
from evidence.segment import SealedSegment
from gateway.errors import ExportError
from gateway.export.remux import remux_to_mp4
from gateway.storage.catalogue import StoredSegment
from gateway.storage.vault import Vault


@dataclass(frozen=True)
class Staged:
    """The incident's footage, decrypted into the staging folder."""

    clip: Path
    ranges: dict[int, tuple[int, int]]
    """seq -> (offset in the clip, size)."""
    clip_sha256: bytes
    signers: dict[int, int]
    """seq -> the badge key generation that signed its header."""
    signatures: dict[int, bytes]
    """seq -> the badge's signature over its header."""
    mp4: Path | None
    mp4_sha256: bytes | None


def verifies(check: Callable[[], object]) -> bool:
    """Whether calling ``check`` raises no EvidenceError."""
    try:
        check()
    except EvidenceError:
        return False
    return True


@contextmanager
def staging_folder(parent: Path) -> Iterator[Path]:
    """A private folder beside the package for the decrypted clip, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=".medbadge-export-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def stage(
    folder: Path,
    segments: Sequence[StoredSegment],
    keys: dict[int, SigningPublicKey],
    vault: Vault,
    custodian: CustodianPrivateKey,
) -> Staged:
    """Decrypt every segment into ``folder/clip.ts`` after checking it as it was stored."""
    clip = folder / "clip.ts"
    digest = hashlib.sha256()
    ranges: dict[int, tuple[int, int]] = {}
    signers: dict[int, int] = {}
    signatures: dict[int, bytes] = {}
    with clip.open("xb") as out:
        for stored in segments:
            sealed = _sealed(vault, stored)
            signers[stored.seq] = _signer(sealed, keys)
            signatures[stored.seq] = sealed.signature
            plaintext = sealed.open(custodian)
            ranges[stored.seq] = (out.tell(), len(plaintext))
            out.write(plaintext)
            digest.update(plaintext)
    return Staged(clip, ranges, digest.digest(), signers, signatures, None, None)


def with_mp4(staged: Staged, target: Path) -> Staged:
    """``staged`` with the derived MP4 made from its clip."""
    remux_to_mp4(staged.clip, target)
    return Staged(
        staged.clip,
        staged.ranges,
        staged.clip_sha256,
        staged.signers,
        staged.signatures,
        target,
        sha256_file(target),
    )


def _sealed(vault: Vault, stored: StoredSegment) -> SealedSegment:
    """The sealed segment as the vault holds it, refused unless it is what was stored."""
    where = f"segment {stored.seq} of badge {stored.badge_id}"
    with vault.open(stored.sealed_sha256) as stream:
        data = stream.read()
    if sha256(data) != stored.sealed_sha256 or len(data) != stored.sealed_size:
        raise ExportError(
            f"the vault's copy of {where} ({stored.sealed_sha256.hex()}) is not the file that "
            "was stored (its SHA-256 differs): the vault was altered; the export is refused"
        )
    sealed = SealedSegment.from_bytes(data, where)
    if sealed.header_bytes != stored.header_bytes:
        raise ExportError(f"the vault file of {where} carries another header than was stored")
    return sealed


def _signer(sealed: SealedSegment, keys: dict[int, SigningPublicKey]) -> int:
    """The generation of the badge key that signed ``sealed``."""
    for generation, key in sorted(keys.items()):
        if verifies(partial(sealed.verify, key)):
            return generation
    raise ExportError(f"{sealed.name} does not verify under any key the badge has had")
