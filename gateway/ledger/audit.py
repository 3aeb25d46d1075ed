"""Rehashing the stored ledger: every leaf against its hash, and the root at a checkpoint's size.

This is what the gateway runs on start (``Ledger.verify_against_last_checkpoint``). It reads
the leaves once, in index order, and keeps only O(log n) hashes, so a ledger of millions of
entries is checked without holding it in memory. Nothing here trusts a stored leaf hash: the
root is recomputed from the leaf bytes.
"""

from __future__ import annotations

import hmac

from evidence.ledger.merkle import EMPTY_ROOT, leaf_hash, node_hash
from gateway.errors import LedgerIntegrityError
from gateway.storage import Storage
from gateway.storage.leaves import Leaves


class StreamingRoot:
    """The RFC 9162 root of a growing run of leaf hashes, in O(log n) memory.

    Keeps the perfect subtrees of the binary decomposition of the count, largest first;
    folding them from the right is MTH's split at the largest power of two below n.
    """

    def __init__(self) -> None:
        """Start with the empty tree."""
        self._subtrees: list[tuple[int, bytes]] = []
        self.count = 0

    def add(self, leaf_hash_: bytes) -> None:
        """Append one leaf hash."""
        height, digest = 0, leaf_hash_
        while self._subtrees and self._subtrees[-1][0] == height:
            digest = node_hash(self._subtrees.pop()[1], digest)
            height += 1
        self._subtrees.append((height, digest))
        self.count += 1

    def root(self) -> bytes:
        """The root over every leaf hash added so far."""
        if not self._subtrees:
            return EMPTY_ROOT
        root = self._subtrees[-1][1]
        for _, left in reversed(self._subtrees[:-1]):
            root = node_hash(left, root)
        return root


def rehash_leaves(leaves: Leaves, size: int) -> bytes:
    """Check every leaf's index and stored hash; return the root of the first ``size`` leaves.

    LedgerIntegrityError names the first missing leaf, the first leaf whose stored hash is
    not the hash of its bytes, or the leaves missing below ``size``.
    """
    accumulator = StreamingRoot()
    expected = 0
    for index, data, stored in leaves.scan():
        if index != expected:
            raise LedgerIntegrityError(
                f"ledger leaf {expected} is missing (the next stored leaf is {index}); "
                f"the last checkpoint covers {size} leaves"
            )
        computed = leaf_hash(data)
        if not hmac.compare_digest(computed, stored):
            raise LedgerIntegrityError(
                f"ledger leaf {index}'s stored hash {stored.hex()} does not match "
                f"its bytes, which hash to {computed.hex()}"
            )
        if index < size:
            accumulator.add(computed)
        expected += 1
    if expected < size:
        raise LedgerIntegrityError(
            f"the ledger holds {expected} leaves but its last checkpoint covers {size}: "
            f"leaves {expected}..{size - 1} are missing"
        )
    return accumulator.root()


def root_difference(
    storage: Storage, number: int, size: int, signed_root: bytes, root: bytes
) -> str:
    """Say how the recomputed ``root`` differs from checkpoint ``number``'s, and where.

    The earlier checkpoints bracket the change: the last one whose root still matches the
    leaves and the first one that no longer does.
    """
    message = (
        f"the root of the ledger's first {size} leaves is {root.hex()}, but the last "
        f"checkpoint (number {number}) signed {signed_root.hex()}: leaf bytes were "
        "altered together with their hashes"
    )
    good, bad = _bracket_alteration(storage, size)
    if bad is not None:
        message += f", in leaves {good}..{bad - 1} (the checkpoint of size {good} still matches)"
    return message


def _bracket_alteration(storage: Storage, size: int) -> tuple[int, int | None]:
    """The largest checkpoint size whose root still matches, and the next one that does not."""
    checkpoints = storage.checkpoints.roots(size)
    accumulator = StreamingRoot()
    leaves = storage.leaves.below(size)
    good = 0
    for checkpoint_size, checkpoint_root in checkpoints:
        while accumulator.count < checkpoint_size:
            accumulator.add(leaf_hash(next(leaves)))
        if accumulator.root() != checkpoint_root:
            return good, checkpoint_size
        good = checkpoint_size
    return good, None
