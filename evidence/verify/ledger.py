"""Verifying a package's ledger: the gateway key, the signed checkpoint, its RFC 3161 time-stamp,
and each ledger entry's inclusion proof against the checkpoint's root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from evidence.errors import EvidenceError
from evidence.hashing import sha256
from evidence.keys import SigningPublicKey
from evidence.ledger.checkpoint import (
    Checkpoint,
    NoteVerifier,
    open_note,
    parse_checkpoint,
    parse_vkey,
)
from evidence.ledger.entry import LedgerEntry
from evidence.ledger.merkle import leaf_hash, verify_inclusion
from evidence.package.layout import (
    CA_CERTIFICATE,
    CHECKPOINT_NOTE,
    CHECKPOINT_TOKEN,
    GATEWAY_KEY,
    GATEWAY_VKEY,
    TSA_CERTIFICATE,
    Check,
    InclusionProof,
    number_in,
    proof_path,
)
from evidence.timestamp import TimestampInfo, verify_timestamp
from evidence.verify.files import PackageContents
from evidence.verify.findings import Findings

CLOCK_SLACK = timedelta(seconds=60)
"""How far a time-stamp may lie before the newest entry it covers (two clocks, each right
to within a few seconds) before it counts as back-dated."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class LedgerView:
    """What the package's ledger files establish."""

    gateway_key: SigningPublicKey | None = None
    vkey: str | None = None
    checkpoint: Checkpoint | None = None
    """The checkpoint, once its note verified under the gateway key."""
    entries: dict[int, LedgerEntry] = field(default_factory=dict)
    """Every entry that parsed, by leaf index."""
    proven: set[int] = field(default_factory=set)
    """The leaf indices whose inclusion proof leads to the verified checkpoint's root."""
    timestamp: TimestampInfo | None = None
    ca_certificate: x509.Certificate | None = None
    tsa_certificate: x509.Certificate | None = None

    def of_kind(self, kind: str) -> dict[int, LedgerEntry]:
        """The parsed entries of ``kind``, by leaf index."""
        return {index: entry for index, entry in self.entries.items() if entry.kind == kind}


def read_ledger(contents: PackageContents, f: Findings) -> LedgerView:
    """Check the gateway key, the checkpoint, every entry's proof and the time-stamp."""
    view = LedgerView()
    view.gateway_key = _gateway_key(contents, f)
    verifier = _note_verifier(contents, view, f)
    note = contents.small.get(CHECKPOINT_NOTE)
    if note is not None and verifier is not None:
        f.examine(Check.CHECKPOINT)
        try:
            text, _ = open_note(note, [verifier])
            view.checkpoint = parse_checkpoint(text)
        except EvidenceError as error:
            f.fail(Check.CHECKPOINT, str(error), file=CHECKPOINT_NOTE)
    elif note is None:
        f.fail(Check.FILE_LIST, "the package has no ledger checkpoint", file=CHECKPOINT_NOTE)
    _read_entries(contents, view, f)
    _check_timestamp(contents, view, f)
    return view


def _gateway_key(contents: PackageContents, f: Findings) -> SigningPublicKey | None:
    data = contents.small.get(GATEWAY_KEY)
    if data is None:
        f.fail(Check.FILE_LIST, "the package has no gateway public key", file=GATEWAY_KEY)
        return None
    try:
        key = SigningPublicKey.from_pem(data, Path(GATEWAY_KEY))
    except EvidenceError as error:
        f.fail(Check.CHECKPOINT, str(error), file=GATEWAY_KEY)
        return None
    if key.pem() != data:
        f.fail(
            Check.CHECKPOINT, "it is not in the one PEM form keys are written in", file=GATEWAY_KEY
        )
        return None
    return key


def _note_verifier(contents: PackageContents, view: LedgerView, f: Findings) -> NoteVerifier | None:
    """The note key from gateway.vkey, which must hold the same key as gateway-signing.pub."""
    data = contents.small.get(GATEWAY_VKEY)
    if data is None:
        f.fail(Check.FILE_LIST, "the package has no gateway verifier key", file=GATEWAY_VKEY)
        return None
    try:
        text = data.decode("ascii")
        if not text.endswith("\n") or text.count("\n") != 1:
            raise EvidenceError("gateway.vkey must be one line of text")
        verifier = parse_vkey(text[:-1])
    except (UnicodeDecodeError, EvidenceError) as error:
        f.fail(Check.CHECKPOINT, f"it is not a verifier key ({error})", file=GATEWAY_VKEY)
        return None
    view.vkey = text[:-1]
    if view.gateway_key is not None and verifier.public_key != view.gateway_key.key:
        f.fail(
            Check.CHECKPOINT,
            "it holds another key than keys/gateway-signing.pub",
            file=GATEWAY_VKEY,
        )
        return None
    return verifier


def _read_entries(contents: PackageContents, view: LedgerView, f: Findings) -> None:
    entry_files = contents.paths("ledger-entry")
    indices = {number_in(path) for path in entry_files}
    for path in contents.paths("inclusion-proof"):
        if number_in(path) not in indices:
            f.fail(Check.INCLUSION, "it proves an entry the package does not hold", file=path)
    for path in entry_files:
        index = number_in(path)
        data = contents.small.get(path)
        if data is None:
            continue
        f.examine(Check.LEDGER_ENTRY)
        try:
            view.entries[index] = LedgerEntry.from_bytes(data, path)
        except EvidenceError as error:
            f.fail(Check.LEDGER_ENTRY, str(error), file=path)
        _check_proof(contents, view, index, data, f)


def _check_proof(
    contents: PackageContents, view: LedgerView, index: int, leaf: bytes, f: Findings
) -> None:
    where = proof_path(index)
    f.examine(Check.INCLUSION)
    data = contents.small.get(where)
    if data is None:
        f.fail(Check.INCLUSION, f"ledger entry {index} has no inclusion proof", file=where)
        return
    checkpoint = view.checkpoint
    if checkpoint is None:
        return  # the checkpoint's own finding says why nothing can be proven
    try:
        proof = InclusionProof.parse(data, where)
        if proof.index != index or proof.tree_size != checkpoint.size:
            raise EvidenceError(
                f"it proves leaf {proof.index} of {proof.tree_size}, not leaf {index} of the "
                f"checkpoint's {checkpoint.size}"
            )
        verify_inclusion(leaf_hash(leaf), index, checkpoint.size, proof.hashes, checkpoint.root)
    except EvidenceError as error:
        f.fail(Check.INCLUSION, str(error), file=where)
        return
    view.proven.add(index)


def _certificate(contents: PackageContents, path: str, f: Findings) -> x509.Certificate | None:
    data = contents.small.get(path)
    if data is None:
        f.fail(Check.FILE_LIST, "the package lacks this certificate", file=path)
        return None
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError as error:
        f.fail(Check.CERTIFICATES, f"it is not a PEM certificate ({error})", file=path)
        return None
    if certificate.public_bytes(Encoding.PEM) != data:
        f.fail(
            Check.CERTIFICATES,
            "it is not in the one PEM form certificates are written in",
            file=path,
        )
        return None
    return certificate


def _check_timestamp(contents: PackageContents, view: LedgerView, f: Findings) -> None:
    """The RFC 3161 token over SHA-256(note), by a TSA the evidence CA certifies, not back-dated."""
    view.ca_certificate = _certificate(contents, CA_CERTIFICATE, f)
    view.tsa_certificate = _certificate(contents, TSA_CERTIFICATE, f)
    token = contents.small.get(CHECKPOINT_TOKEN)
    note = contents.small.get(CHECKPOINT_NOTE)
    if token is None:
        f.fail(Check.FILE_LIST, "the checkpoint has no time-stamp", file=CHECKPOINT_TOKEN)
        return
    if note is None or view.ca_certificate is None or view.tsa_certificate is None:
        return
    f.examine(Check.TIMESTAMP)
    try:
        info = verify_timestamp(
            token, sha256(note), view.ca_certificate, certificates=[view.tsa_certificate]
        )
    except EvidenceError as error:
        f.fail(Check.TIMESTAMP, str(error), file=CHECKPOINT_TOKEN)
        return
    newest = max((entry.at_ns for entry in view.entries.values()), default=None)
    latest_true_time = info.gen_time + (info.accuracy or timedelta(0)) + CLOCK_SLACK
    if newest is not None and datetime_ns(latest_true_time) < newest:
        f.fail(
            Check.TIMESTAMP,
            f"the time-stamp says {info.gen_time.isoformat()}, before the newest ledger entry "
            "it covers was made: it is back-dated",
            file=CHECKPOINT_TOKEN,
        )
        return
    view.timestamp = info


def datetime_ns(moment: datetime) -> int:
    """An aware datetime as integer nanoseconds since the epoch."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def check_pins(
    view: LedgerView,
    f: Findings,
    *,
    gateway_key: SigningPublicKey | None,
    ca_certificate: x509.Certificate | None,
) -> Mapping[str, bool]:
    """Compare the package's gateway key and CA with those given; say which were pinned."""
    if gateway_key is not None:
        f.examine(Check.TRUST)
        if view.gateway_key is None or view.gateway_key.raw != gateway_key.raw:
            f.fail(
                Check.TRUST,
                "the gateway key is not the one given to the verifier",
                file=GATEWAY_KEY,
            )
    if ca_certificate is not None:
        f.examine(Check.TRUST)
        if view.ca_certificate is None or view.ca_certificate != ca_certificate:
            f.fail(
                Check.TRUST,
                "the evidence CA is not the one given to the verifier",
                file=CA_CERTIFICATE,
            )
    return {"gateway_key": gateway_key is not None, "ca": ca_certificate is not None}
