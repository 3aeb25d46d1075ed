"""The ledger: an append-only RFC 9162 Merkle log in SQLite, with signed, time-stamped checkpoints.

Each leaf is a canonical-CBOR ``LedgerEntry`` (``medbadge.ledger.v1``: kind, gateway time,
body; defined in evidence.ledger_entry, which courts use too) stored with its leaf hash. A
checkpoint is a C2SP tlog-checkpoint signed as a C2SP note with the gateway's Ed25519 key
under the log's origin, and the note's SHA-256 is time-stamped (RFC 3161) through a
``timestamper`` seam. On start the gateway rehashes every stored leaf and recomputes the
root at the last checkpoint's size; any difference refuses to run (decision 1100).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from evidence.canonical import CanonicalValue
from evidence.errors import EvidenceError, LedgerError, VerificationError
from evidence.hashing import sha256
from evidence.keys import SigningKey
from evidence.ledger.checkpoint import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    open_note,
    parse_checkpoint,
    sign_note,
)
from evidence.ledger.entry import LedgerEntry as EvidenceLedgerEntry
from evidence.ledger.entry import LedgerKind
from evidence.ledger.merkle import MerkleLog, leaf_hash, verify_consistency
from gateway.datadir import GatewayDataDir
from gateway.errors import LedgerIntegrityError, StorageError
from gateway.ledger.audit import rehash_leaves, root_difference
from gateway.storage import Storage
from gateway.storage.checkpoints import CheckpointRow
from gateway.storage.leaves import Leaves
from gateway.timestamping.timestamper import Timestamper

log = logging.getLogger(__name__)

def ledger_origin(hospital: str) -> str:
    """The log's origin for ``hospital``: ``<hospital-in-lowercase-with-hyphens>/medbadge-ledger``.

    The origin is also the note key name, which may hold no space or '+'.
    """
    words = "".join(ch if ch.isprintable() and ch != "+" else " " for ch in hospital).split()
    return "/".join(part for part in ("-".join(words).lower(), "medbadge-ledger") if part)


class LedgerEntry(EvidenceLedgerEntry):
    """A ledger leaf as the gateway reads it: one that does not decode means a damaged ledger."""

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> LedgerEntry:
        """Parse leaf bytes; LedgerIntegrityError naming ``where`` if they are not an entry."""
        try:
            entry = EvidenceLedgerEntry.from_bytes(data, where)
        except EvidenceError as error:
            raise LedgerIntegrityError(str(error)) from None
        return cls(entry.kind, entry.at_ns, entry.body)


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint as stored: the tree head, its signed note and its RFC 3161 reply, if any."""

    number: int
    """The checkpoint's row id: later checkpoints have higher numbers and never fewer leaves."""
    checkpoint: Checkpoint
    note: bytes
    """The C2SP signed note: checkpoint text, blank line, the gateway's signature line."""
    timestamp_token: bytes | None
    """The DER ``TimeStampResp`` over ``note_sha256``; None while no TSA has answered."""
    created_at_ns: int

    @property
    def size(self) -> int:
        """How many leaves the checkpoint covers."""
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        """The Merkle root of those leaves."""
        return self.checkpoint.root

    @property
    def note_sha256(self) -> bytes:
        """The digest the time-stamp token covers: SHA-256 of the note bytes."""
        return sha256(self.note)


class _LeafTable:
    """The stored leaves as a MerkleLog LeafHashStore (reads only; see Ledger.append)."""

    def __init__(self, leaves: Leaves) -> None:
        self._leaves = leaves

    def size(self) -> int:
        """One past the highest stored leaf index (a gap is found by verification, not here)."""
        return self._leaves.size()

    def leaf_hashes(self, start: int, stop: int) -> Sequence[bytes]:
        """The stored leaf hashes ``[start, stop)``; LedgerIntegrityError if any is missing."""
        hashes = self._leaves.hashes(start, stop)
        if len(hashes) != stop - start:
            raise LedgerIntegrityError(
                f"ledger leaves {start}..{stop - 1} are incomplete: {len(hashes)} of "
                f"{stop - start} are stored"
            )
        return hashes

    def append(self, leaf_hash: bytes) -> None:
        """Refuse: a leaf is stored with its bytes, by Ledger.append, never as a bare hash."""
        raise LedgerError("ledger leaves are appended with their bytes through Ledger.append")


class Ledger:
    """The gateway's append-only Merkle log in the gateway's storage.

    Use one Ledger from one thread at a time, like its storage; give a background
    checkpointer storage of its own (``open_ledger``). Several processes may share the
    database: appends are serialised by its write lock.
    """

    def __init__(
        self,
        storage: Storage,
        signing_key: SigningKey,
        origin: str,
        timestamper: Timestamper | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        """Serve the log kept in ``storage``.

        Checkpoints are signed by ``signing_key`` under the note key name ``origin`` and,
        when ``timestamper`` is given, time-stamped; ``clock`` gives gateway time in ns.
        """
        self._storage = storage
        self.origin = origin
        self._signer = NoteSigner(origin, signing_key.key)
        self._timestamper = timestamper
        self._clock = clock
        self._leaves = _LeafTable(storage.leaves)
        self._log = MerkleLog(self._leaves)
        self._wrote_in_open_transaction = False

    @property
    def storage(self) -> Storage:
        """The storage the ledger writes to: a row written in its transaction commits with
        the entry that records it."""
        return self._storage

    @property
    def verifier(self) -> NoteVerifier:
        """The note key that checks this ledger's checkpoints (publish it as a vkey)."""
        return self._signer.verifier()

    @property
    def timestamps(self) -> bool:
        """Whether checkpoints are time-stamped."""
        return self._timestamper is not None

    @property
    def size(self) -> int:
        """The number of leaves in the log."""
        return self._leaves.size()

    def now(self) -> int:
        """Gateway time in ns, as entries are dated."""
        return self._clock()

    # -- writing ---------------------------------------------------------------------------

    def append(
        self, kind: LedgerKind, body: Mapping[str, CanonicalValue], *, at_ns: int | None = None
    ) -> int:
        """Append an entry of ``kind`` (dated now unless ``at_ns``); return its leaf index.

        Runs in its own transaction, or inside the caller's open one,
        so that the caller's row and this entry commit together.
        """
        entry = LedgerEntry(kind, self.now() if at_ns is None else at_ns, dict(body))
        data = entry.to_bytes()
        with self._storage.transaction() as joined:
            index = self._leaves.size()
            self._storage.leaves.append(index, data, leaf_hash(data), entry.at_ns)
        if joined:
            self._wrote_in_open_transaction = True
        return index

    def checkpoint(self) -> SignedCheckpoint:
        """Sign the current tree head, store it, then time-stamp it when a timestamper is set.

        Refuses (LedgerIntegrityError) to sign a tree that does not extend the last
        checkpoint. A TSA failure is logged and leaves the checkpoint without a token; the
        schedule retries the stamp (see ``stamp``).
        """
        if self._storage.in_transaction:
            raise LedgerError(
                "a checkpoint is made outside any open transaction, over committed leaves"
            )
        self._log.root(self.size)  # warm the memo before taking the write lock
        with self._storage.transaction():
            previous = self.latest_checkpoint()
            size = self.size
            root = self._log.root(size)
            if previous is not None:
                self._check_extends(previous, size, root)
            note = sign_note(Checkpoint(self.origin, size, root).body(), [self._signer])
            created = self.now()
            number = self._storage.checkpoints.add(size, root, note, created)
        made = SignedCheckpoint(number, Checkpoint(self.origin, size, root), note, None, created)
        return self.stamp(made)

    def stamp(self, checkpoint: SignedCheckpoint) -> SignedCheckpoint:
        """Time-stamp a stored checkpoint that has no token yet; return it as it now stands."""
        if checkpoint.timestamp_token is not None or self._timestamper is None:
            return checkpoint
        try:
            token = self._timestamper.stamp(checkpoint.note_sha256)
        except Exception:  # a TSA down or refusing must not lose the signed checkpoint
            log.exception(
                "checkpoint %d (size %d) was not time-stamped", checkpoint.number, checkpoint.size
            )
            return checkpoint
        with self._storage.transaction():
            self._storage.checkpoints.set_token(checkpoint.number, token)
        return SignedCheckpoint(
            checkpoint.number,
            checkpoint.checkpoint,
            checkpoint.note,
            token,
            checkpoint.created_at_ns,
        )

    def _check_extends(self, previous: SignedCheckpoint, size: int, root: bytes) -> None:
        if size < previous.size:
            raise LedgerIntegrityError(
                f"the ledger holds {size} leaves, fewer than the {previous.size} its checkpoint "
                f"{previous.number} covers; refusing to sign a shrunken log"
            )
        proof = self._log.consistency_proof(previous.size, size)
        try:
            verify_consistency(previous.size, size, previous.root, root, proof)
        except VerificationError as error:
            raise LedgerIntegrityError(
                f"refusing to sign a checkpoint of size {size}: the stored tree does not extend "
                f"checkpoint {previous.number} (size {previous.size}): {error}"
            ) from None

    # -- reading ---------------------------------------------------------------------------

    def leaf(self, index: int) -> bytes:
        """The bytes of leaf ``index`` (what its leaf hash covers)."""
        data = self._storage.leaves.leaf(index)
        if data is None:
            raise LedgerError(f"the ledger has no leaf {index}")
        return data

    def entry(self, index: int) -> LedgerEntry:
        """Leaf ``index`` decoded."""
        return LedgerEntry.from_bytes(self.leaf(index), f"ledger leaf {index}")

    def root(self, size: int | None = None) -> bytes:
        """The root of the tree of the first ``size`` leaves (default: all)."""
        return self._merkle().root(size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The RFC 9162 proof that leaf ``index`` is in the tree of the first ``size`` leaves."""
        return self._merkle().inclusion_proof(index, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The RFC 9162 proof that the tree of ``old_size`` leaves is a prefix of ``new_size``'s."""
        return self._merkle().consistency_proof(old_size, new_size)

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        """The most recent checkpoint, read from its note; None before the first.

        LedgerIntegrityError if the note is not a checkpoint or disagrees with its row.
        """
        row = self._storage.checkpoints.latest()
        return None if row is None else _stored_checkpoint(row)

    def _merkle(self) -> MerkleLog:
        """The memoizing log, unless this ledger wrote in a still open transaction.

        Leaves not yet committed may be rolled back, so no subtree over them may be memoized.
        """
        if not self._storage.in_transaction:
            self._wrote_in_open_transaction = False
        if self._wrote_in_open_transaction:
            return MerkleLog(self._leaves)
        return self._log

    # -- verifying -------------------------------------------------------------------------

    def verify_against_last_checkpoint(self) -> SignedCheckpoint | None:
        """Check the stored log against its last signed checkpoint; return that checkpoint.

        The note must verify under this gateway's key as this log's origin and agree with
        its row; every leaf's stored hash must be the hash of its bytes, with no index
        missing; and the root recomputed from the leaf bytes at the checkpoint's size must
        be the signed root. Otherwise LedgerIntegrityError says what differs.
        """
        try:
            last = self.latest_checkpoint()
            if last is not None:
                self._check_signature(last)
            size = 0 if last is None else last.size
            root = rehash_leaves(self._storage.leaves, size)
            if last is not None and not hmac.compare_digest(root, last.root):
                raise LedgerIntegrityError(
                    root_difference(self._storage, last.number, last.size, last.root, root)
                )
        except StorageError as error:  # a damaged file, or values of the wrong type
            raise LedgerIntegrityError(f"the ledger's tables cannot be read: {error}") from None
        return last

    def _check_signature(self, last: SignedCheckpoint) -> None:
        where = f"the last checkpoint (number {last.number}, size {last.size})"
        if last.checkpoint.origin != self.origin:
            raise LedgerIntegrityError(
                f"{where} names the log {last.checkpoint.origin!r}, but this gateway signs as "
                f"{self.origin!r}; a log keeps its origin for life"
            )
        try:
            open_note(last.note, [self.verifier])
        except VerificationError as error:
            raise LedgerIntegrityError(
                f"{where} is not signed by this gateway's key as {self.origin}: {error}"
            ) from None


def _stored_checkpoint(row: CheckpointRow) -> SignedCheckpoint:
    """A checkpoint row as a SignedCheckpoint, refusing a note that disagrees with its row."""
    number, size, root, note = row.number, row.size, row.root, row.note
    token, created = row.timestamp_token, row.created_at_ns
    where = f"checkpoint {number}"
    separator = note.rfind(b"\n\n")
    try:
        checkpoint = parse_checkpoint(note[: separator + 1] if separator >= 0 else note)
    except VerificationError as error:
        raise LedgerIntegrityError(f"{where}'s note does not hold a checkpoint: {error}") from None
    if checkpoint.size != size:
        raise LedgerIntegrityError(
            f"{where}'s stored size {size} differs from the size {checkpoint.size} its signed "
            "note carries"
        )
    if not hmac.compare_digest(checkpoint.root, root):
        raise LedgerIntegrityError(
            f"{where}'s stored root {bytes(root).hex()} differs from the root "
            f"{checkpoint.root.hex()} its signed note carries"
        )
    return SignedCheckpoint(number, checkpoint, bytes(note), token, created)


def open_ledger(
    data_dir: GatewayDataDir,
    storage: Storage,
    *,
    timestamper: Timestamper | None = None,
    clock: Callable[[], int] = time.time_ns,
    origin: str | None = None,
    verify: bool = True,
) -> Ledger:
    """The data directory's ledger in ``storage``, checked against its last checkpoint.

    The gateway signing key signs checkpoints under ``origin`` (by default
    ``ledger_origin`` of the hospital's name; a log keeps its origin for life). With
    ``verify`` (the default, and what every start must do) a ledger that differs from its
    last checkpoint raises LedgerIntegrityError.
    """
    if origin is None:
        origin = ledger_origin(data_dir.evidence_ca().hospital_name)
    ledger = Ledger(storage, data_dir.signing_key(), origin, timestamper, clock=clock)
    if verify:
        ledger.verify_against_last_checkpoint()
    return ledger
