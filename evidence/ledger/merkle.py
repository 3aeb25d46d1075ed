"""The ledger's Merkle tree (RFC 9162 §2.1): hashes, inclusion and consistency proofs.

Leaves hash as SHA-256(0x00 || leaf) and interior nodes as SHA-256(0x01 || left || right),
so a leaf can never be passed off as a node. Building a proof follows the RFC's recursive
definitions (PATH, SUBPROOF); checking one follows its verification algorithms (§2.1.3.2,
§2.1.4.2) step for step, so a court can set this file beside the RFC and compare.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from evidence.errors import LedgerError, VerificationError
from evidence.hashing import DIGEST_SIZE, sha256

EMPTY_ROOT = sha256(b"")
"""The root of the empty tree: SHA-256 of the empty string."""

_FIRST_CACHED_LEVEL = 4
"""Subtrees of 16 leaves and more are memoized; smaller ones are rehashed from their leaves."""

SubtreeHash = Callable[[int, int], bytes]
"""``(level, index)`` to the hash of the complete subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``."""


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 9162 hash of one leaf: SHA-256(0x00 || data)."""
    return sha256(b"\x00" + data)


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 hash of an interior node: SHA-256(0x01 || left || right)."""
    return sha256(b"\x01" + left + right)


# Building proofs ------------------------------------------------------------------------


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (for ``n > 1``): the RFC's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_root(subtree: SubtreeHash, lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]), built from complete subtrees (the RFC recursion keeps ``lo`` aligned)."""
    n = hi - lo
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        return subtree(level, lo >> level)
    k = _split(n)
    return node_hash(_range_root(subtree, lo, lo + k), _range_root(subtree, lo + k, hi))


def _path(subtree: SubtreeHash, m: int, lo: int, hi: int) -> list[bytes]:
    """PATH(m, D[lo:hi]) of RFC 9162 §2.1.3.1, with ``m`` counted from ``lo``."""
    if hi - lo == 1:
        return []
    k = _split(hi - lo)
    if m < k:
        return [*_path(subtree, m, lo, lo + k), _range_root(subtree, lo + k, hi)]
    return [*_path(subtree, m - k, lo + k, hi), _range_root(subtree, lo, lo + k)]


def _subproof(subtree: SubtreeHash, m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[lo:hi], b) of RFC 9162 §2.1.4.1, with ``m`` counted from ``lo``."""
    if m == hi - lo:
        return [] if whole else [_range_root(subtree, lo, hi)]
    k = _split(hi - lo)
    if m <= k:
        return [*_subproof(subtree, m, lo, lo + k, whole), _range_root(subtree, lo + k, hi)]
    return [*_subproof(subtree, m - k, lo + k, hi, False), _range_root(subtree, lo, lo + k)]


def _require(condition: bool, message: str) -> None:
    """Raise LedgerError with ``message`` for a proof or root that cannot be built."""
    if not condition:
        raise LedgerError(message)


def _sequence_subtree(hashes: Sequence[bytes]) -> SubtreeHash:
    def subtree(level: int, index: int) -> bytes:
        if level == 0:
            return hashes[index]
        return node_hash(subtree(level - 1, 2 * index), subtree(level - 1, 2 * index + 1))

    return subtree


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Return the root (MTH) over ``hashes``, which are leaf hashes; empty gives EMPTY_ROOT."""
    if not hashes:
        return EMPTY_ROOT
    return _range_root(_sequence_subtree(hashes), 0, len(hashes))


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return the inclusion proof of leaf ``index`` in the tree over all of ``leaf_hashes``."""
    size = len(leaf_hashes)
    _require(0 <= index < size, f"leaf {index} is not in a tree of {size} leaves")
    return _path(_sequence_subtree(leaf_hashes), index, 0, size)


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return the proof that the tree of ``old_size`` leaves is a prefix of the whole tree."""
    size = len(leaf_hashes)
    _require(0 <= old_size <= size, f"a tree of {old_size} leaves cannot precede one of {size}")
    if old_size in (0, size):
        return []
    return _subproof(_sequence_subtree(leaf_hashes), old_size, 0, size, True)


# Checking proofs ------------------------------------------------------------------------


def _check_digest(what: str, value: bytes) -> None:
    if len(value) != DIGEST_SIZE:
        raise VerificationError(f"{what} is {len(value)} bytes long, not {DIGEST_SIZE}")


def _check_proof_digests(kind: str, proof: Sequence[bytes]) -> None:
    for position, element in enumerate(proof):
        _check_digest(f"hash {position} of the {kind} proof", element)


def _sides(fn: int, sn: int) -> Iterator[bool]:
    """The RFC's loop with the hashing left out: for each proof hash, is it the left sibling?

    Steps 4 (§2.1.3.2) and 6 (§2.1.4.2) move ``fn``/``sn`` the same way whatever the hashes
    are, so the number of steps before ``sn`` reaches 0 is the exact proof length.
    """
    while sn != 0:
        if fn & 1 or fn == sn:
            yield True
            while not (fn & 1 or fn == 0):
                fn, sn = fn >> 1, sn >> 1
        else:
            yield False
        fn, sn = fn >> 1, sn >> 1


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``tree_size`` with ``root``.

    Raise VerificationError saying what failed; return None when the proof holds.
    """
    _check_digest("the leaf hash", leaf_hash)
    _check_digest("the root", root)
    _check_proof_digests("inclusion", proof)
    if not 0 <= index < tree_size:
        raise VerificationError(f"leaf index {index} is outside a tree of {tree_size} leaves")
    sides = list(_sides(index, tree_size - 1))
    if len(proof) != len(sides):
        raise VerificationError(
            f"inclusion proof for leaf {index} in a tree of {tree_size} has {len(proof)} "
            f"hashes where {len(sides)} are needed"
        )
    r = leaf_hash
    for p, p_is_left in zip(proof, sides, strict=True):
        r = node_hash(p, r) if p_is_left else node_hash(r, p)
    if not hmac.compare_digest(r, root):
        raise VerificationError(
            f"inclusion proof for leaf {index} in a tree of {tree_size} "
            "does not lead to the checkpoint root"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``old_size`` with ``old_root`` is a prefix of the newer tree.

    Raise VerificationError saying what failed; return None when the proof holds.
    """
    _check_digest("the earlier root", old_root)
    _check_digest("the later root", new_root)
    _check_proof_digests("consistency", proof)
    where = f"consistency proof from size {old_size} to size {new_size}"
    if not 0 <= old_size <= new_size:
        raise VerificationError(f"{where}: a log cannot shrink or have a negative size")
    if old_size in (0, new_size):
        # Nothing to prove beyond the roots themselves; a non-empty proof is malformed.
        if proof:
            raise VerificationError(f"{where} must be empty but has {len(proof)} hashes")
        if old_size == 0 and not hmac.compare_digest(old_root, EMPTY_ROOT):
            raise VerificationError(f"{where}: the earlier root is not the empty tree's root")
        if old_size == new_size and not hmac.compare_digest(old_root, new_root):
            raise VerificationError(f"{where}: the two roots differ for the same tree size")
        return
    old_is_power_of_two = old_size & (old_size - 1) == 0
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    sides = list(_sides(fn, sn))
    needed = len(sides) + (0 if old_is_power_of_two else 1)
    if len(proof) != needed:
        raise VerificationError(f"{where} has {len(proof)} hashes where {needed} are needed")
    path = [old_root, *proof] if old_is_power_of_two else list(proof)
    fr = sr = path[0]
    for c, c_is_left in zip(path[1:], sides, strict=True):
        if c_is_left:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
        else:
            sr = node_hash(sr, c)
    if not hmac.compare_digest(fr, old_root):
        raise VerificationError(f"{where} does not reproduce the earlier checkpoint root")
    if not hmac.compare_digest(sr, new_root):
        raise VerificationError(f"{where} does not lead to the later checkpoint root")


# The log ---------------------------------------------------------------------------------


class LeafHashStore(Protocol):
    """Where a MerkleLog keeps its leaf hashes, in order; append-only."""

    def size(self) -> int:
        """Return how many leaf hashes are stored."""
        ...

    def leaf_hashes(self, start: int, stop: int) -> Sequence[bytes]:
        """Return the leaf hashes at indices ``[start, stop)``, all of which exist."""
        ...

    def append(self, leaf_hash: bytes) -> None:
        """Store ``leaf_hash`` as the next leaf."""
        ...


class MemoryLeafHashStore:
    """A LeafHashStore in a Python list, for tests and short-lived logs."""

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        """Start with ``leaf_hashes`` already stored."""
        self._hashes = list(leaf_hashes)

    def size(self) -> int:
        """Return how many leaf hashes are stored."""
        return len(self._hashes)

    def leaf_hashes(self, start: int, stop: int) -> Sequence[bytes]:
        """Return the leaf hashes at indices ``[start, stop)``."""
        return self._hashes[start:stop]

    def append(self, leaf_hash: bytes) -> None:
        """Store ``leaf_hash`` as the next leaf."""
        self._hashes.append(leaf_hash)


class MerkleLog:
    """An append-only Merkle log over a LeafHashStore, with roots and proofs at any size.

    A complete subtree never changes once its last leaf is in, so its hash is memoized by
    ``(level, index)``: a root or proof then costs O(log n) lookups and hashes, not O(n),
    and the first call after a restart hashes the stored log once. Subtrees under 16
    leaves are rehashed from their leaves, which keeps the memo an eighth of the log's size.
    Appends must be serialised by the caller, as the store's order is the log's order.
    """

    def __init__(self, store: LeafHashStore) -> None:
        """Serve the log kept in ``store`` (which may already hold leaves)."""
        self._store = store
        self._nodes: dict[tuple[int, int], bytes] = {}

    @property
    def size(self) -> int:
        """The number of leaves in the log."""
        return self._store.size()

    def append(self, leaf_hash: bytes) -> int:
        """Add ``leaf_hash`` (see :func:`leaf_hash`) as the next leaf; return its index."""
        if len(leaf_hash) != DIGEST_SIZE:
            raise LedgerError(f"a leaf hash must be {DIGEST_SIZE} bytes, not {len(leaf_hash)}")
        index = self._store.size()
        self._store.append(leaf_hash)
        return index

    def root(self, size: int | None = None) -> bytes:
        """Return the root of the tree of the first ``size`` leaves (default: all)."""
        size = self.size if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else _range_root(self._subtree, 0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Return the proof that leaf ``index`` is in the tree of the first ``size`` leaves."""
        size = self.size if size is None else size
        self._check_size(size)
        _require(0 <= index < size, f"leaf {index} is not in a tree of {size} leaves")
        return _path(self._subtree, index, 0, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Return the proof that the tree of ``old_size`` is a prefix of that of ``new_size``."""
        new_size = self.size if new_size is None else new_size
        self._check_size(new_size)
        _require(
            0 <= old_size <= new_size,
            f"a tree of {old_size} leaves cannot precede one of {new_size}",
        )
        if old_size in (0, new_size):
            return []
        return _subproof(self._subtree, old_size, 0, new_size, True)

    def _check_size(self, size: int) -> None:
        _require(0 <= size <= self.size, f"the log has {self.size} leaves, so no tree of {size}")

    def _subtree(self, level: int, index: int) -> bytes:
        if level < _FIRST_CACHED_LEVEL:
            hashes = list(self._store.leaf_hashes(index << level, (index + 1) << level))
            while len(hashes) > 1:
                hashes = [node_hash(a, b) for a, b in zip(hashes[::2], hashes[1::2], strict=True)]
            return hashes[0]
        cached = self._nodes.get((level, index))
        if cached is None:
            left = self._subtree(level - 1, 2 * index)
            cached = node_hash(left, self._subtree(level - 1, 2 * index + 1))
            self._nodes[(level, index)] = cached
        return cached
