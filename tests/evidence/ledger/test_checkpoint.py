"""Signed checkpoints: the C2SP note and checkpoint formats, checked against published examples."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence.errors import EncodingError, VerificationError
from evidence.ledger.checkpoint import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    format_vkey,
    open_note,
    parse_checkpoint,
    parse_vkey,
    sign_note,
)
from evidence.ledger.merkle import leaf_hash, root_from_leaf_hashes

# Vectors from golang.org/x/mod/sumdb/note (note_test.go): keys, a text and its signatures.
PETER_SKEY_SEED = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"  # base64(0x01 || seed)
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKv"
    "qfqdngotpRZb6KE6RyyBwJnAM=\n"
).encode()
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTG"
    "wnWLox33WWd1RvMc+QQ=\n"
).encode()

# The example from c2sp.org/tlog-checkpoint (its key is not published, so it cannot verify).
SPEC_CHECKPOINT_TEXT = (
    b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
SPEC_CHECKPOINT_NOTE = (
    SPEC_CHECKPOINT_TEXT
    + (
        "\n\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN"
        "7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    ).encode()
)


def peter_signer() -> NoteSigner:
    seed = base64.b64decode(PETER_SKEY_SEED)[1:]
    return NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed))


def spec_key_id(name: str, public_key: bytes) -> str:
    """The key id as c2sp.org/signed-note defines it, computed here independently."""
    return hashlib.sha256(name.encode() + b"\x0a" + b"\x01" + public_key).digest()[:4].hex()


@pytest.fixture(scope="module")
def gateway() -> NoteSigner:
    """The gateway's checkpoint key, named after the log as tlog-checkpoint recommends."""
    return NoteSigner("ledger.hospital.example/medbadge", Ed25519PrivateKey.generate())


@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    leaves = [leaf_hash(f"entry {i}".encode()) for i in range(40)]
    return Checkpoint("ledger.hospital.example/medbadge", 40, root_from_leaf_hashes(leaves))


# Keys --------------------------------------------------------------------------------------


def test_the_key_id_and_vkey_match_the_published_key() -> None:
    signer = peter_signer()
    public = signer.private_key.public_key().public_bytes_raw()
    assert spec_key_id("PeterNeumann", public) == "c74f20a3"
    assert signer.key_id.hex() == "c74f20a3"
    assert format_vkey(signer.verifier()) == PETER_VKEY
    assert PETER_VKEY.split("+")[2] == base64.b64encode(b"\x01" + public).decode()


@pytest.mark.parametrize("vkey", [PETER_VKEY, ENOCH_VKEY])
def test_published_vkeys_parse_and_print_back_unchanged(vkey: str) -> None:
    verifier = parse_vkey(vkey)
    assert verifier.name == vkey.split("+", maxsplit=1)[0]
    assert verifier.key_id.hex() == spec_key_id(
        verifier.name, verifier.public_key.public_bytes_raw()
    )
    assert format_vkey(verifier) == vkey


@settings(max_examples=100, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    name=st.text(
        st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1
    ).filter(lambda name: "+" not in name and not any(ch.isspace() for ch in name)),
)
def test_any_vkey_round_trips(seed: bytes, name: str) -> None:
    verifier = NoteSigner(name, Ed25519PrivateKey.from_private_bytes(seed)).verifier()
    assert parse_vkey(format_vkey(verifier)) == verifier


def test_every_mangled_vkey_is_refused() -> None:
    mangled = {
        PETER_VKEY[i:j] for i in range(len(PETER_VKEY)) for j in range(i + 1, len(PETER_VKEY))
    }
    mangled |= {
        PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
        for i in range(len(PETER_VKEY))
    }
    for vkey in sorted(mangled - {PETER_VKEY}):
        with pytest.raises(EncodingError):
            parse_vkey(vkey)


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "not canonical base64",
        ),
        (
            "PeterNeumann+c74f20a3+" + base64.b64encode(b"\x01" + bytes(31)).decode(),
            "holds 31 key bytes, not 32",
        ),
        (
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "unsupported signature type 0x65",
        ),
        (
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "gives key id c74f20a4, but its name and key give c74f20a3",
        ),
        (
            "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "not 8 lowercase hex",
        ),
        ("PeterNeumann+c74f20a3", "not of the form name\\+keyid\\+key"),
    ],
)
def test_bad_vkeys_say_what_is_wrong(vkey: str, message: str) -> None:
    with pytest.raises(EncodingError, match=message):
        parse_vkey(vkey)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "nbsp\u00a0name", "line\nbreak"])
def test_key_names_the_format_cannot_carry_are_refused(name: str) -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(EncodingError, match="note key name"):
        NoteSigner(name, key)
    with pytest.raises(EncodingError, match="note key name"):
        NoteVerifier(name, key.public_key())


# Notes -------------------------------------------------------------------------------------


def test_signing_reproduces_the_published_note_byte_for_byte() -> None:
    assert sign_note(GO_TEXT, [peter_signer()]) == GO_TEXT + b"\n" + PETER_SIG


def test_signatures_by_unknown_keys_are_ignored_and_known_ones_verified() -> None:
    note = GO_TEXT + b"\n" + PETER_SIG + ENOCH_SIG
    peter, enoch = parse_vkey(PETER_VKEY), parse_vkey(ENOCH_VKEY)
    assert open_note(note, [peter]) == (GO_TEXT, ("PeterNeumann",))
    assert open_note(note, [enoch]) == (GO_TEXT, ("EnochRoot",))
    assert open_note(note, [enoch, peter]) == (GO_TEXT, ("PeterNeumann", "EnochRoot"))


def test_a_note_with_no_trusted_signature_is_refused() -> None:
    note = GO_TEXT + b"\n" + ENOCH_SIG
    with pytest.raises(VerificationError, match="no signature by a trusted key"):
        open_note(note, [parse_vkey(PETER_VKEY)])
    with pytest.raises(VerificationError, match=r"no signature by a trusted key \(none\)"):
        open_note(note, [])


def test_a_key_sharing_only_the_name_does_not_count() -> None:
    impostor = NoteVerifier(
        "example.com/behind-the-sofa", Ed25519PrivateKey.generate().public_key()
    )
    with pytest.raises(VerificationError, match="no signature by a trusted key"):
        open_note(SPEC_CHECKPOINT_NOTE, [impostor])


def test_a_bad_signature_by_a_trusted_key_rejects_the_whole_note() -> None:
    signature_line = PETER_SIG.decode()
    broken = (signature_line[:60] + "ABCD" + signature_line[64:]).encode()
    with pytest.raises(VerificationError, match="PeterNeumann\\+c74f20a3 does not verify"):
        open_note(GO_TEXT + b"\n" + broken, [parse_vkey(PETER_VKEY)])
    with pytest.raises(VerificationError, match="does not verify"):
        open_note(GO_TEXT + b"\n" + ENOCH_SIG + broken, [parse_vkey(PETER_VKEY)])


def test_the_text_may_hold_blank_lines_and_the_last_one_separates_signatures(
    gateway: NoteSigner,
) -> None:
    text = (
        "Ognuno sta solo sul cuor della terra\n"
        "trafitto da un raggio di sole:\n"
        "\n"
        "ed è subito sera.\n"
    ).encode()
    assert open_note(sign_note(text, [gateway]), [gateway.verifier()]) == (text, (gateway.name,))


def test_notes_carry_several_signers_in_order(gateway: NoteSigner) -> None:
    note = sign_note(GO_TEXT, [gateway, peter_signer()])
    assert note.endswith(b"\n" + PETER_SIG)
    assert open_note(note, [parse_vkey(PETER_VKEY)]) == (GO_TEXT, ("PeterNeumann",))
    assert open_note(note, [gateway.verifier()]) == (GO_TEXT, (gateway.name,))


@pytest.mark.parametrize(
    ("note", "message"),
    [
        (GO_TEXT, "no blank line"),
        (GO_TEXT + b"\n", "does not end in a complete signature line"),
        (GO_TEXT + b"\n" + PETER_SIG[:-1], "does not end in a complete signature line"),
        (b"\x01" + GO_TEXT + b"\n" + PETER_SIG, "control character"),
        (b"\xff" + GO_TEXT + b"\n" + PETER_SIG, "not valid UTF-8"),
        (GO_TEXT + b"\n" + PETER_SIG + b"Unexpected line.\n", "line 2 .* em dash"),
        (GO_TEXT + b"\n" + PETER_SIG.replace("\u2014".encode(), b"-"), "em dash"),
        (GO_TEXT + b"\n" + PETER_SIG.replace(b"PeterNeumann", b"Peter+Neumann"), "'\\+'"),
        (GO_TEXT + b"\n" + PETER_SIG.replace(b"x08go", b"x08g!"), "base64"),
        (GO_TEXT + b"\n" + PETER_SIG.replace(b"AM=", b"AN="), "base64"),
        (GO_TEXT + b"\n" + "\u2014 PeterNeumann x08gow==\n".encode(), "key id and signature"),
        (GO_TEXT + b"\n" + PETER_SIG * 101, "more than 100 signatures"),
    ],
)
def test_malformed_notes_are_refused(note: bytes, message: str) -> None:
    with pytest.raises(VerificationError, match=message):
        open_note(note, [parse_vkey(PETER_VKEY)])


def test_sixteen_signatures_are_accepted(gateway: NoteSigner) -> None:
    others = [NoteSigner(f"witness{i}.example", Ed25519PrivateKey.generate()) for i in range(15)]
    note = sign_note(GO_TEXT, [*others, gateway])
    assert open_note(note, [gateway.verifier()]) == (GO_TEXT, (gateway.name,))


def test_the_same_trusted_key_listed_twice_is_harmless() -> None:
    peter = parse_vkey(PETER_VKEY)
    assert open_note(GO_TEXT + b"\n" + PETER_SIG, [peter, peter]) == (GO_TEXT, ("PeterNeumann",))


@pytest.mark.parametrize(
    ("text", "signers_count", "message"),
    [
        (b"no final newline", 1, "must end in a newline"),
        (b"a\x00b\n", 1, "control bytes"),
        (b"\xff\n", 1, "not valid UTF-8"),
        (GO_TEXT, 0, "at least one signer"),
        (GO_TEXT, 2, "share a key name and key id"),
    ],
)
def test_notes_that_cannot_be_signed_are_refused(
    text: bytes, signers_count: int, message: str
) -> None:
    with pytest.raises(EncodingError, match=message):
        sign_note(text, [peter_signer()] * signers_count)


# Checkpoints -------------------------------------------------------------------------------


def test_the_published_checkpoint_parses_and_prints_back_unchanged() -> None:
    parsed = parse_checkpoint(SPEC_CHECKPOINT_TEXT)
    assert parsed == Checkpoint(
        "example.com/behind-the-sofa",
        20852163,
        base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="),
    )
    assert parsed.body() == SPEC_CHECKPOINT_TEXT


def test_the_body_is_exactly_three_lines_and_the_extensions(checkpoint: Checkpoint) -> None:
    root_b64 = base64.b64encode(checkpoint.root).decode()
    assert checkpoint.body() == f"ledger.hospital.example/medbadge\n40\n{root_b64}\n".encode()
    extended = Checkpoint(checkpoint.origin, 0, checkpoint.root, ("ext one", "ext two"))
    assert extended.body() == (
        f"ledger.hospital.example/medbadge\n0\n{root_b64}\next one\next two\n".encode()
    )
    assert parse_checkpoint(extended.body()) == extended


def test_a_signed_checkpoint_round_trips(gateway: NoteSigner, checkpoint: Checkpoint) -> None:
    note = sign_note(checkpoint.body(), [gateway])
    text, signed_by = open_note(note, [parse_vkey(format_vkey(gateway.verifier()))])
    assert signed_by == (gateway.name,)
    assert parse_checkpoint(text) == checkpoint


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"\n40\n", b"\n41\n"),
        (b"ledger.hospital", b"ledger.hospitaL"),
        (b"medbadge\n", b"medbadge2\n"),
    ],
)
def test_a_changed_checkpoint_body_fails(
    gateway: NoteSigner, checkpoint: Checkpoint, old: bytes, new: bytes
) -> None:
    note = sign_note(checkpoint.body(), [gateway])
    assert old in note
    with pytest.raises(VerificationError, match="does not verify"):
        open_note(note.replace(old, new, 1), [gateway.verifier()])


def test_a_changed_root_fails(gateway: NoteSigner, checkpoint: Checkpoint) -> None:
    other = Checkpoint(checkpoint.origin, checkpoint.size, bytes(32))
    note = sign_note(checkpoint.body(), [gateway])
    forged = note.replace(checkpoint.body(), other.body())
    with pytest.raises(VerificationError, match="does not verify"):
        open_note(forged, [gateway.verifier()])


def test_a_checkpoint_signed_by_another_key_fails(
    gateway: NoteSigner, checkpoint: Checkpoint
) -> None:
    rogue = NoteSigner(gateway.name, Ed25519PrivateKey.generate())
    with pytest.raises(VerificationError, match="no signature by a trusted key"):
        open_note(sign_note(checkpoint.body(), [rogue]), [gateway.verifier()])


@settings(max_examples=50, deadline=None)
@given(
    origin=st.text(
        st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40
    ).filter(lambda s: "\n" not in s),
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(
        st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20),
        max_size=3,
    ),
)
def test_any_checkpoint_round_trips_through_a_signed_note(
    gateway: NoteSigner, origin: str, size: int, root: bytes, extensions: list[str]
) -> None:
    original = Checkpoint(origin, size, root, tuple(extensions))
    text, _ = open_note(sign_note(original.body(), [gateway]), [gateway.verifier()])
    assert text == original.body()
    assert parse_checkpoint(text) == original


ROOT_LINE = base64.b64encode(bytes([0xFB, 0xEF] * 16)).decode()  # holds both '+' and '/'
assert "+" in ROOT_LINE and "/" in ROOT_LINE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"origin\n40\n{ROOT_LINE}", "newline-terminated"),
        (f"origin\n40\n{ROOT_LINE}\n\n", "3 lines"),
        (f"origin\n40\n{ROOT_LINE}\n\nextension\n", "3 lines"),
        (f"\n40\n{ROOT_LINE}\n", "3 lines"),
        ("origin\n40\n", "3 lines"),
        (f"origin\n040\n{ROOT_LINE}\n", "size line '040'"),
        (f"origin\n-1\n{ROOT_LINE}\n", "size line '-1'"),
        (f"origin\n+4\n{ROOT_LINE}\n", "size line"),
        (f"origin\n\u0664\u0660\n{ROOT_LINE}\n", "size line"),
        (f"origin\n18446744073709551616\n{ROOT_LINE}\n", "size line"),
        (f"origin\n4 0\n{ROOT_LINE}\n", "size line"),
        ("origin\n40\nAAAA\n", "root line"),
        (f"origin\n40\n{ROOT_LINE[:-2]}9=\n", "root line"),
        (f"origin\n40\n{ROOT_LINE.replace('+', '-')}\n", "root line"),
        (f"origin\n40\n{ROOT_LINE.replace('/', '_')}\n", "root line"),
        (f"ori\tgin\n40\n{ROOT_LINE}\n", "newline-terminated lines of text"),
    ],
)
def test_malformed_checkpoints_say_which_line_is_wrong(text: str, message: str) -> None:
    with pytest.raises(VerificationError, match=message):
        parse_checkpoint(text)
    with pytest.raises(VerificationError, match=message):
        parse_checkpoint(text.encode())


def test_the_largest_and_smallest_sizes_parse() -> None:
    assert parse_checkpoint(f"o\n0\n{ROOT_LINE}\n").size == 0
    assert parse_checkpoint(f"o\n18446744073709551615\n{ROOT_LINE}\n").size == 2**64 - 1


def test_non_utf8_checkpoint_text_is_refused() -> None:
    with pytest.raises(VerificationError, match="not valid UTF-8"):
        parse_checkpoint(b"\xffrigin\n1\n" + ROOT_LINE.encode() + b"\n")


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, bytes(32), ()),
        ("two\nlines", 1, bytes(32), ()),
        ("origin", -1, bytes(32), ()),
        ("origin", 2**64, bytes(32), ()),
        ("origin", True, bytes(32), ()),
        ("origin", 1, bytes(31), ()),
        ("origin", 1, bytes(32), ("",)),
    ],
)
def test_checkpoints_the_format_cannot_carry_are_refused(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(EncodingError, match="checkpoint"):
        Checkpoint(origin, size, root, extensions)
