"""The ledger's Merkle tree against RFC 9162, published test vectors and an independent oracle."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence.errors import LedgerError, VerificationError
from evidence.ledger.merkle import (
    EMPTY_ROOT,
    MemoryLeafHashStore,
    MerkleLog,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)


def rfc_mth(entries: Sequence[bytes]) -> bytes:
    """MTH(D[n]) written straight from RFC 9162 §2.1.1, over raw entries: the oracle."""
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + rfc_mth(entries[:k]) + rfc_mth(entries[k:])).digest()


def entries(n: int) -> list[bytes]:
    """``n`` distinct leaf entries (distinct, so no two leaves may stand in for each other)."""
    return [f"ledger record {i}".encode() for i in range(n)]


def hashes(n: int) -> list[bytes]:
    return [leaf_hash(entry) for entry in entries(n)]


def flip(data: bytes, bit: int) -> bytes:
    """``data`` with one bit inverted (``bit`` taken modulo the bit length)."""
    bit %= len(data) * 8
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# Test vectors from github.com/transparency-dev/merkle (testonly/constants.go, proof tests).
VECTOR_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
VECTOR_ROOTS = [
    bytes.fromhex(h)
    for h in [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
]
VECTOR_LEAF_HASHES = [
    bytes.fromhex(h)
    for h in [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ]
]
# (leaf index, tree size, proof); the vectors count leaves from 1, these from 0.
VECTOR_INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (0, 1, []),
]
# (old size, new size, proof)
VECTOR_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def test_leaf_and_node_hashes_use_the_rfc_domain_prefixes() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = b"L" * 32, b"R" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT


def test_leaf_hashes_match_the_published_vectors() -> None:
    assert [leaf_hash(entry) for entry in VECTOR_LEAVES] == VECTOR_LEAF_HASHES


@pytest.mark.parametrize("size", range(9))
def test_roots_match_the_published_vectors(size: int) -> None:
    assert root_from_leaf_hashes(VECTOR_LEAF_HASHES[:size]) == VECTOR_ROOTS[size]
    log = MerkleLog(MemoryLeafHashStore(VECTOR_LEAF_HASHES))
    assert log.root(size) == VECTOR_ROOTS[size]


@pytest.mark.parametrize(("index", "size", "proof"), VECTOR_INCLUSION)
def test_inclusion_proofs_match_the_published_vectors(
    index: int, size: int, proof: list[str]
) -> None:
    expected = [bytes.fromhex(h) for h in proof]
    assert inclusion_proof(VECTOR_LEAF_HASHES[:size], index) == expected
    assert MerkleLog(MemoryLeafHashStore(VECTOR_LEAF_HASHES)).inclusion_proof(index, size) == (
        expected
    )
    verify_inclusion(VECTOR_LEAF_HASHES[index], index, size, expected, VECTOR_ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), VECTOR_CONSISTENCY)
def test_consistency_proofs_match_the_published_vectors(
    old: int, new: int, proof: list[str]
) -> None:
    expected = [bytes.fromhex(h) for h in proof]
    assert consistency_proof(VECTOR_LEAF_HASHES[:new], old) == expected
    assert MerkleLog(MemoryLeafHashStore(VECTOR_LEAF_HASHES)).consistency_proof(old, new) == (
        expected
    )
    verify_consistency(old, new, VECTOR_ROOTS[old], VECTOR_ROOTS[new], expected)


@pytest.mark.parametrize("size", range(70))
def test_roots_match_the_rfc_definition(size: int) -> None:
    assert root_from_leaf_hashes(hashes(size)) == rfc_mth(entries(size))


@settings(max_examples=150, deadline=None)
@given(size=st.integers(1, 300), data=st.data())
def test_every_inclusion_proof_verifies_and_any_flipped_bit_fails(
    size: int, data: st.DataObject
) -> None:
    leaves = hashes(size)
    root = rfc_mth(entries(size))
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = inclusion_proof(leaves, index)
    verify_inclusion(leaves[index], index, size, proof, root)

    bit = data.draw(st.integers(0, 255), label="bit")
    with pytest.raises(VerificationError, match="does not lead to the checkpoint root"):
        verify_inclusion(flip(leaves[index], bit), index, size, proof, root)
    with pytest.raises(VerificationError, match="does not lead to the checkpoint root"):
        verify_inclusion(leaves[index], index, size, proof, flip(root, bit))
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1), label="position")
        tampered = [*proof[:position], flip(proof[position], bit), *proof[position + 1 :]]
        with pytest.raises(VerificationError, match="does not lead to the checkpoint root"):
            verify_inclusion(leaves[index], index, size, tampered, root)
    index_bit = data.draw(st.integers(0, max(size.bit_length(), 1)), label="index bit")
    with pytest.raises(VerificationError):
        verify_inclusion(leaves[index], index ^ (1 << index_bit), size, proof, root)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 40])
def test_every_leaf_of_small_trees_is_provable_and_no_other_position_is(size: int) -> None:
    leaves = hashes(size)
    root = root_from_leaf_hashes(leaves)
    for index in range(size):
        proof = inclusion_proof(leaves, index)
        verify_inclusion(leaves[index], index, size, proof, root)
        for other in range(size):
            if other != index:
                with pytest.raises(VerificationError):
                    verify_inclusion(leaves[index], other, size, proof, root)


def test_inclusion_failure_says_which_leaf_and_tree() -> None:
    leaves = hashes(40)
    proof = inclusion_proof(leaves, 17)
    with pytest.raises(VerificationError) as failure:
        verify_inclusion(leaves[18], 17, 40, proof, root_from_leaf_hashes(leaves))
    assert str(failure.value) == (
        "inclusion proof for leaf 17 in a tree of 40 does not lead to the checkpoint root"
    )


@pytest.mark.parametrize(
    ("index", "size", "proof_change", "message"),
    [
        (40, 40, 0, "outside a tree of 40"),
        (-1, 40, 0, "outside a tree of 40"),
        (0, 0, 0, "outside a tree of 0"),
        (17, 40, -1, "has 5 hashes where 6 are needed"),
        (17, 40, +1, "has 7 hashes where 6 are needed"),
        (17, 40, -6, "has 0 hashes where 6 are needed"),
    ],
)
def test_malformed_inclusion_proofs_are_verification_errors(
    index: int, size: int, proof_change: int, message: str
) -> None:
    leaves = hashes(40)
    proof = inclusion_proof(leaves, 17)
    proof = proof[:proof_change] if proof_change < 0 else proof + [leaves[0]] * proof_change
    with pytest.raises(VerificationError, match=message):
        verify_inclusion(leaves[17], index, size, proof, root_from_leaf_hashes(leaves))


def test_hashes_of_the_wrong_length_are_verification_errors() -> None:
    leaves = hashes(8)
    root = root_from_leaf_hashes(leaves)
    proof = inclusion_proof(leaves, 3)
    with pytest.raises(VerificationError, match="hash 1 of the inclusion proof is 31 bytes"):
        verify_inclusion(leaves[3], 3, 8, [proof[0], proof[1][:31], proof[2]], root)
    with pytest.raises(VerificationError, match="the leaf hash is 0 bytes"):
        verify_inclusion(b"", 3, 8, proof, root)
    with pytest.raises(VerificationError, match="the root is 33 bytes"):
        verify_inclusion(leaves[3], 3, 8, proof, root + b"\x00")


@settings(max_examples=200, deadline=None)
@given(
    index=st.integers(-(2**70), 2**70),
    size=st.integers(-(2**70), 2**70),
    proof=st.lists(st.binary(min_size=30, max_size=33), max_size=70),
    leaf=st.binary(min_size=31, max_size=33),
    root=st.binary(min_size=31, max_size=33),
)
def test_arbitrary_inclusion_input_only_ever_raises_verification_error(
    index: int, size: int, proof: list[bytes], leaf: bytes, root: bytes
) -> None:
    with pytest.raises(VerificationError):
        verify_inclusion(leaf, index, size, proof, root)


def consistency_probes(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> list[tuple[int, int, bytes, bytes, list[bytes]]]:
    """Every way of getting a non-trivial consistency proof slightly wrong."""
    probes = [
        (old - 1, new, old_root, new_root, proof),
        (old + 1, new, old_root, new_root, proof),
        (old ^ 2, new, old_root, new_root, proof),
        (old, new * 2, old_root, new_root, proof),
        (old, new // 2, old_root, new_root, proof),
        (old, new, new_root, old_root, proof),
        (old, new, flip(old_root, 7), new_root, proof),
        (old, new, old_root, flip(new_root, 200), proof),
        (old, new, old_root, new_root, []),
        (old, new, old_root, new_root, proof[:-1]),
        (old, new, old_root, new_root, [*proof, old_root]),
        (old, new, old_root, new_root, [new_root, *proof]),
        (old, new, old_root, new_root, [proof[0], *proof]),
    ]
    for position in range(len(proof)):
        tampered = [*proof[:position], flip(proof[position], 4), *proof[position + 1 :]]
        probes.append((old, new, old_root, new_root, tampered))
    return probes


@pytest.mark.parametrize("new", range(41))
def test_every_consistency_proof_of_small_trees_verifies_and_tampering_fails(new: int) -> None:
    leaves = hashes(new)
    roots = [rfc_mth(entries(size)) for size in range(new + 1)]
    for old in range(new + 1):
        proof = consistency_proof(leaves, old)
        verify_consistency(old, new, roots[old], roots[new], proof)
        if not proof:
            continue
        for probe in consistency_probes(old, new, roots[old], roots[new], proof):
            with pytest.raises(VerificationError):
                verify_consistency(*probe)


@settings(max_examples=100, deadline=None)
@given(new=st.integers(1, 300), data=st.data())
def test_consistency_proofs_of_larger_trees_verify(new: int, data: st.DataObject) -> None:
    old = data.draw(st.integers(0, new), label="old")
    leaves = hashes(new)
    proof = consistency_proof(leaves, old)
    old_root, new_root = rfc_mth(entries(old)), rfc_mth(entries(new))
    verify_consistency(old, new, old_root, new_root, proof)
    if proof:
        bit = data.draw(st.integers(0, 255), label="bit")
        position = data.draw(st.integers(0, len(proof) - 1), label="position")
        tampered = [*proof[:position], flip(proof[position], bit), *proof[position + 1 :]]
        with pytest.raises(VerificationError):
            verify_consistency(old, new, old_root, new_root, tampered)


def test_trivial_consistency_still_checks_the_roots() -> None:
    root = root_from_leaf_hashes(hashes(5))
    other = root_from_leaf_hashes(hashes(6))
    verify_consistency(5, 5, root, root, [])
    verify_consistency(0, 5, EMPTY_ROOT, root, [])
    with pytest.raises(VerificationError, match="the two roots differ for the same tree size"):
        verify_consistency(5, 5, root, other, [])
    with pytest.raises(VerificationError, match="not the empty tree's root"):
        verify_consistency(0, 5, other, root, [])
    with pytest.raises(VerificationError, match="must be empty but has 1 hashes"):
        verify_consistency(5, 5, root, root, [root])
    with pytest.raises(VerificationError, match="a log cannot shrink"):
        verify_consistency(6, 5, other, root, [])


def test_consistency_failure_says_which_root_is_not_reproduced() -> None:
    leaves = hashes(8)
    proof = consistency_proof(leaves, 6)
    old_root, new_root = root_from_leaf_hashes(leaves[:6]), root_from_leaf_hashes(leaves)
    with pytest.raises(VerificationError) as earlier:
        verify_consistency(6, 8, flip(old_root, 0), new_root, proof)
    assert str(earlier.value) == (
        "consistency proof from size 6 to size 8 does not reproduce the earlier checkpoint root"
    )
    with pytest.raises(VerificationError, match="does not lead to the later checkpoint root"):
        verify_consistency(6, 8, old_root, flip(new_root, 0), proof)


@settings(max_examples=200, deadline=None)
@given(
    old=st.integers(-(2**70), 2**70),
    new=st.integers(-(2**70), 2**70),
    proof=st.lists(st.binary(min_size=31, max_size=33), max_size=70),
)
def test_arbitrary_consistency_input_only_ever_raises_verification_error(
    old: int, new: int, proof: list[bytes]
) -> None:
    with pytest.raises(VerificationError):
        verify_consistency(old, new, b"\x01" * 32, b"\x02" * 32, proof)


def test_building_an_impossible_proof_is_an_evidence_error() -> None:
    leaves = hashes(4)
    with pytest.raises(LedgerError, match="leaf 4 is not in a tree of 4 leaves"):
        inclusion_proof(leaves, 4)
    with pytest.raises(LedgerError, match="a tree of 5 leaves cannot precede one of 4"):
        consistency_proof(leaves, 5)
    assert root_from_leaf_hashes([]) == EMPTY_ROOT


# The log ---------------------------------------------------------------------------------


class CountingStore(MemoryLeafHashStore):
    """A real in-memory store that also counts how many leaf hashes were read from it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def leaf_hashes(self, start: int, stop: int) -> Sequence[bytes]:
        found = super().leaf_hashes(start, stop)
        self.reads += len(found)
        return found


@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 300), data=st.data())
def test_the_log_agrees_with_the_rfc_at_every_size(size: int, data: st.DataObject) -> None:
    log = MerkleLog(MemoryLeafHashStore())
    leaves = hashes(size)
    assert [log.append(leaf) for leaf in leaves] == list(range(size))
    assert log.size == size
    assert log.root() == rfc_mth(entries(size))
    old = data.draw(st.integers(0, size), label="old")
    assert log.root(old) == rfc_mth(entries(old))
    assert log.consistency_proof(old) == consistency_proof(leaves, old)
    if old:
        index = data.draw(st.integers(0, old - 1), label="index")
        assert log.inclusion_proof(index, old) == inclusion_proof(leaves[:old], index)
        assert log.inclusion_proof(index) == inclusion_proof(leaves, index)


def test_a_log_reopened_over_its_store_gives_the_same_answers() -> None:
    leaves = hashes(100)
    first = MerkleLog(MemoryLeafHashStore())
    for leaf in leaves[:60]:
        first.append(leaf)
    earlier_root = first.root()
    reopened = MerkleLog(MemoryLeafHashStore(leaves[:60]))
    for leaf in leaves[60:]:
        reopened.append(leaf)
    assert reopened.root(60) == earlier_root
    verify_consistency(60, 100, earlier_root, reopened.root(), reopened.consistency_proof(60))
    verify_inclusion(leaves[33], 33, 100, reopened.inclusion_proof(33), reopened.root())


def test_the_log_memoizes_complete_subtrees() -> None:
    # Without the memo every root or proof would read all 20,000 leaves again.
    store = CountingStore()
    log = MerkleLog(store)
    leaves = hashes(20_000)
    for leaf in leaves:
        log.append(leaf)
    log.root()
    store.reads = 0
    log.append(leaf_hash(b"one more"))
    root = log.root()
    assert store.reads <= 32
    for index in (0, 7_777, 19_999, 20_000):
        store.reads = 0
        proof = log.inclusion_proof(index)
        assert store.reads <= 64
        leaf = leaves[index] if index < 20_000 else leaf_hash(b"one more")
        verify_inclusion(leaf, index, 20_001, proof, root)
    store.reads = 0
    proof = log.consistency_proof(12_345)
    assert store.reads <= 64
    verify_consistency(12_345, 20_001, log.root(12_345), root, proof)


def test_the_log_refuses_impossible_requests() -> None:
    log = MerkleLog(MemoryLeafHashStore(hashes(10)))
    with pytest.raises(LedgerError, match="a leaf hash must be 32 bytes, not 5"):
        log.append(b"short")
    with pytest.raises(LedgerError, match="the log has 10 leaves, so no tree of 11"):
        log.root(11)
    with pytest.raises(LedgerError, match="leaf 10 is not in a tree of 10 leaves"):
        log.inclusion_proof(10)
    with pytest.raises(LedgerError, match="leaf 0 is not in a tree of 0 leaves"):
        log.inclusion_proof(0, 0)
    with pytest.raises(LedgerError, match="a tree of 7 leaves cannot precede one of 6"):
        log.consistency_proof(7, 6)
    assert MerkleLog(MemoryLeafHashStore()).root() == EMPTY_ROOT


def test_a_million_leaf_log_proves_its_first_and_last_leaves() -> None:
    log = MerkleLog(MemoryLeafHashStore())
    for i in range(1 << 20):
        log.append(leaf_hash(i.to_bytes(4, "big")))
    root = log.root()
    for index in (0, 1 << 19, (1 << 20) - 1):
        leaf = leaf_hash(index.to_bytes(4, "big"))
        verify_inclusion(leaf, index, 1 << 20, log.inclusion_proof(index), root)
    verify_consistency(999_999, 1 << 20, log.root(999_999), root, log.consistency_proof(999_999))
    with pytest.raises(VerificationError, match="does not lead to the checkpoint root"):
        verify_inclusion(leaf_hash(b"not in the log"), 0, 1 << 20, log.inclusion_proof(0), root)
