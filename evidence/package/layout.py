"""The court package's layout: file names and roles, the manifest, checksums and proof files.

One module says what every file of an evidence package is called and how its small text
files are written, so the gateway that writes a package and the verifier that reads it
cannot disagree (docs/export.md). Nothing here reads a package; see evidence.verify.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from evidence.canonical import CanonicalValue
from evidence.errors import FormatError
from evidence.ledger.entry import LedgerEntry

PACKAGE_FORMAT = "medbadge.package.v1"
"""The manifest's ``format``; a verifier refuses any other."""
CUSTODY_FORMAT = "medbadge.custody.v1"
"""The ``format`` of custody.json."""
PROOF_FORMAT = "medbadge.inclusion-proof.v1"
"""The first word of every inclusion proof file."""

MANIFEST = "manifest.json"
CHECKSUMS = "SHA256SUMS"
INSTRUCTIONS = "VERIFY.txt"
CLIP = "clip.ts"
DERIVED_MP4 = "derived/clip.mp4"
INCIDENT_RECORD = "incident.record"
ALERT_RECORD = "alert.record"
CUSTODY = "custody.json"
CHECKPOINT_NOTE = "ledger/checkpoint.note"
CHECKPOINT_TOKEN = "ledger/checkpoint.tsr"  # noqa: S105 - an RFC 3161 token, not a secret
GATEWAY_KEY = "keys/gateway-signing.pub"
GATEWAY_VKEY = "keys/gateway.vkey"
CA_CERTIFICATE = "certs/evidence-ca.crt"
TSA_CERTIFICATE = "certs/tsa.crt"

DERIVED_HOW = (
    "remuxed from the segments into MP4 without re-encoding (stream copy; AAC moved from "
    "ADTS to MP4 framing); for playback in a browser only: the evidence is the segments"
)
"""What the manifest says about how the derived MP4 was made."""

MIN_SEQ_DIGITS = 10
"""Segment file names have at least this many digits, zero-padded, so names sort by seq."""


class Check(enum.StrEnum):
    """The checks ``evidence verify`` makes; each finding names the one that failed."""

    PACKAGE = "package"
    FILE_LIST = "file-list"
    FILE_HASH = "file-hash"
    MANIFEST = "manifest"
    INSTRUCTIONS = "instructions"
    BADGE_KEY = "badge-key"
    SEGMENT_HEADER = "segment-header"
    SEGMENT_SIGNATURE = "segment-signature"
    SEGMENT_PLAINTEXT = "segment-plaintext"
    CHAIN = "chain"
    CLIP = "clip"
    INCIDENT_RECORD = "incident-record"
    ALERT = "alert"
    LEDGER_ENTRY = "ledger-entry"
    INCLUSION = "inclusion-proof"
    CHECKPOINT = "checkpoint-signature"
    TIMESTAMP = "timestamp"
    CERTIFICATES = "certificates"
    RECEIPT = "receipt"
    CUSTODY = "custody"
    DERIVED = "derived"
    TRUST = "trust"


CLAIMS: Mapping[Check, str] = {
    Check.PACKAGE: "The package is a readable zip (or folder) of plain files with safe names.",
    Check.FILE_LIST: "It holds exactly the files manifest.json and SHA256SUMS list.",
    Check.FILE_HASH: "Every file has the size and SHA-256 both listings give.",
    Check.MANIFEST: "manifest.json says exactly what the verified files and ledger entries say.",
    Check.INSTRUCTIONS: "VERIFY.txt is the standard text for this package.",
    Check.BADGE_KEY: "Every badge key is one the ledger records as enrolled for that badge.",
    Check.SEGMENT_HEADER: "Every segment header is well-formed and names its badge and seq.",
    Check.SEGMENT_SIGNATURE: "Every segment header is signed by the badge.",
    Check.SEGMENT_PLAINTEXT: "Every segment has the size and SHA-256 its signed header gives.",
    Check.CHAIN: "The segments form one unbroken chain over the incident's whole range.",
    Check.CLIP: "clip.ts is exactly the segments joined in order.",
    Check.INCIDENT_RECORD: "The incident record is signed by the badge and names the segments.",
    Check.ALERT: "The badge's alert is present, signed by the badge and names this incident.",
    Check.LEDGER_ENTRY: "Every ledger entry agrees with the file or fact it records.",
    Check.INCLUSION: "Every ledger entry is in the gateway's log under the checkpoint.",
    Check.CHECKPOINT: "The checkpoint is signed by the gateway's key.",
    Check.TIMESTAMP: "An RFC 3161 time-stamp certified by the evidence CA covers the checkpoint.",
    Check.CERTIFICATES: "The CA and TSA certificates are those the export entry names.",
    Check.RECEIPT: "Every receipt is signed by the gateway and matches its ledger entry.",
    Check.CUSTODY: "custody.json is exactly the custody entries, and none about it is withheld.",
    Check.DERIVED: "derived/clip.mp4 is the file the export entry names.",
    Check.TRUST: "The gateway key and CA match those given to the verifier, when given.",
}
"""What each check establishes, in one sentence (the manifest's ``claims``)."""


# -- names and roles ------------------------------------------------------------------------


def seq_digits(last_seq: int) -> int:
    """How many digits the segment file names of a package ending at ``last_seq`` carry."""
    return max(MIN_SEQ_DIGITS, len(str(last_seq)))


def segment_stem(seq: int, digits: int) -> str:
    """``segments/<seq, zero-padded>``: add ``.ts``, ``.header`` or ``.sig``."""
    return f"segments/{seq:0{digits}d}"


def entry_path(index: int) -> str:
    """The file of ledger entry ``index``."""
    return f"ledger/entries/{index}.entry"


def proof_path(index: int) -> str:
    """The inclusion proof of ledger entry ``index``."""
    return f"ledger/proofs/{index}.proof"


def badge_key_path(badge_id: str, generation: int) -> str:
    """The public key of generation ``generation`` of ``badge_id``'s key."""
    return f"keys/badge-{badge_id}-{generation}.pub"


def receipt_path(subject: str, seq_stem: str | None, number: int) -> str:
    """A receipt's file: ``receipts/segment-<seq>.receipt``, ``incident``, ``alert``.

    ``seq_stem`` is the zero-padded seq of a segment receipt; ``number`` counts receipts for
    the same subject from 1 (a second one gets ``-2``; the gateway normally sends one).
    """
    base = f"segment-{seq_stem}" if seq_stem is not None else subject
    return f"receipts/{base}{'' if number == 1 else f'-{number}'}.receipt"


_DECIMAL = r"(?:0|[1-9][0-9]*)"
_ROLES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), role)
    for pattern, role in (
        (r"segments/[0-9]{10,20}\.ts", "segment"),
        (r"segments/[0-9]{10,20}\.header", "segment-header"),
        (r"segments/[0-9]{10,20}\.sig", "segment-signature"),
        (re.escape(CLIP), "clip"),
        (re.escape(DERIVED_MP4), "derived"),
        (re.escape(INCIDENT_RECORD), "incident-record"),
        (re.escape(ALERT_RECORD), "alert-record"),
        (
            r"receipts/(?:segment-[0-9]{10,20}|incident|alert)(?:-[2-9]|-[1-9][0-9]+)?\.receipt",
            "receipt",
        ),
        (rf"ledger/entries/{_DECIMAL}\.entry", "ledger-entry"),
        (rf"ledger/proofs/{_DECIMAL}\.proof", "inclusion-proof"),
        (re.escape(CHECKPOINT_NOTE), "checkpoint"),
        (re.escape(CHECKPOINT_TOKEN), "checkpoint-timestamp"),
        (r"keys/badge-[a-z0-9][a-z0-9-]{0,62}-[1-9][0-9]*\.pub", "badge-key"),
        (re.escape(GATEWAY_KEY), "gateway-key"),
        (re.escape(GATEWAY_VKEY), "gateway-vkey"),
        (re.escape(CA_CERTIFICATE), "evidence-ca-certificate"),
        (re.escape(TSA_CERTIFICATE), "tsa-certificate"),
        (re.escape(CUSTODY), "custody"),
        (re.escape(INSTRUCTIONS), "instructions"),
        (re.escape(MANIFEST), "manifest"),
        (re.escape(CHECKSUMS), "checksums"),
    )
)
STREAMED_ROLES = frozenset({"segment", "clip", "derived"})
"""Roles of files that may be large: read in blocks, never whole."""


def role_of(path: str) -> str | None:
    """The role of the file at ``path`` in a package, or None if no package file is named so."""
    for pattern, role in _ROLES:
        if pattern.fullmatch(path):
            return role
    return None


def number_in(path: str) -> int:
    """The decimal number in a segment, entry or proof file name (``segments/0041.ts`` -> 41)."""
    return int(path.rsplit("/", 1)[-1].split(".", 1)[0])


# -- small text formats -----------------------------------------------------------------------


@dataclass(frozen=True)
class FileRecord:
    """One file of a package: its path, size and SHA-256."""

    path: str
    size: int
    sha256: bytes


@dataclass(frozen=True)
class InclusionProof:
    """An RFC 9162 inclusion proof of one ledger entry, as a package carries it."""

    index: int
    tree_size: int
    hashes: tuple[bytes, ...]

    def to_text(self) -> bytes:
        """``medbadge.inclusion-proof.v1 <index> <tree size>``, then one hex hash per line."""
        lines = [f"{PROOF_FORMAT} {self.index} {self.tree_size}"]
        lines += [digest.hex() for digest in self.hashes]
        return "".join(f"{line}\n" for line in lines).encode("ascii")

    @classmethod
    def parse(cls, data: bytes, where: str) -> InclusionProof:
        """Read a proof file strictly; FormatError naming ``where`` and the line at fault."""
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise FormatError(f"{where} is not ASCII text") from None
        if not text.endswith("\n"):
            raise FormatError(f"{where} does not end in a newline")
        first, *rest = text[:-1].split("\n")
        match = re.fullmatch(rf"{re.escape(PROOF_FORMAT)} ({_DECIMAL}) ({_DECIMAL})", first)
        if match is None:
            raise FormatError(f"{where}: line 1 is not '{PROOF_FORMAT} <index> <tree size>'")
        hashes = []
        for number, line in enumerate(rest, start=2):
            if not re.fullmatch(r"[0-9a-f]{64}", line):
                raise FormatError(f"{where}: line {number} is not a lowercase hex SHA-256")
            hashes.append(bytes.fromhex(line))
        return cls(int(match[1]), int(match[2]), tuple(hashes))


def format_checksums(files: Sequence[FileRecord]) -> bytes:
    """SHA256SUMS in coreutils format (``<hex>  <path>``), sorted by path."""
    lines = [
        f"{record.sha256.hex()}  {record.path}\n"
        for record in sorted(files, key=lambda record: record.path)
    ]
    return "".join(lines).encode("utf-8")


def parse_checksums(data: bytes, where: str = CHECKSUMS) -> dict[str, bytes]:
    """Read a SHA256SUMS file strictly: path -> SHA-256; FormatError at the first bad line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{where} is not UTF-8 text") from None
    if not text.endswith("\n"):
        raise FormatError(f"{where} does not end in a newline")
    listed: dict[str, bytes] = {}
    for number, line in enumerate(text[:-1].split("\n"), start=1):
        match = re.fullmatch(r"([0-9a-f]{64}) [ *]([^\\\n]+)", line)
        if match is None:
            raise FormatError(f"{where}: line {number} is not '<sha256>  <file>'")
        if match[2] in listed:
            raise FormatError(f"{where}: line {number} lists {match[2]} a second time")
        listed[match[2]] = bytes.fromhex(match[1])
    return listed


def render_json(value: object) -> bytes:
    """The one JSON rendering of package files: sorted keys, two-space indent, final newline."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def format_time(ns: int) -> str:
    """A gateway time in ns as ISO 8601 UTC with nanoseconds: ``2026-03-01T10:00:00.000000001Z``."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:09d}Z"


def json_value(value: CanonicalValue) -> object:
    """A ledger value for JSON: byte strings as lowercase hex, everything else as it is."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {key: json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    return value


# -- the manifest and custody.json ----------------------------------------------------------


@dataclass(frozen=True)
class ExportFacts:
    """What a package is about, as its ledger entries establish it."""

    incident_id: str
    badge_id: str
    wearer: str
    first_seq: int
    last_seq: int
    segment_count: int
    exported_at_ns: int
    exported_by: str
    justification: str
    export_index: int
    origin: str
    checkpoint_size: int
    checkpoint_root: bytes


def custody_document(incident_id: str, entries: Sequence[tuple[int, LedgerEntry]]) -> object:
    """custody.json: each custody entry (leaf index, time, body) in ledger order, readable."""
    rendered = [
        {
            "ledger_index": index,
            "entry_file": entry_path(index),
            "proof_file": proof_path(index),
            "at": format_time(entry.at_ns),
            "at_ns": entry.at_ns,
            **{key: json_value(item) for key, item in entry.body.items()},
        }
        for index, entry in sorted(entries, key=lambda item: item[0])
    ]
    return {"format": CUSTODY_FORMAT, "incident": incident_id, "entries": rendered}


def build_manifest(
    facts: ExportFacts, files: Sequence[FileRecord], roles: Mapping[str, str]
) -> dict[str, object]:
    """The manifest for ``facts`` and ``files`` (every file but the manifest and SHA256SUMS)."""
    ordered = sorted(files, key=lambda record: record.path)
    segments = [record.path for record in ordered if roles.get(record.path) == "segment"]
    return {
        "format": PACKAGE_FORMAT,
        "incident": facts.incident_id,
        "badge": facts.badge_id,
        "wearer": facts.wearer,
        "segments": {
            "first_seq": facts.first_seq,
            "last_seq": facts.last_seq,
            "count": facts.segment_count,
        },
        "export": {
            "at": format_time(facts.exported_at_ns),
            "at_ns": facts.exported_at_ns,
            "by": facts.exported_by,
            "justification": facts.justification,
            "ledger_index": facts.export_index,
        },
        "checkpoint": {
            "origin": facts.origin,
            "size": facts.checkpoint_size,
            "root": facts.checkpoint_root.hex(),
        },
        "files": [
            {
                "path": record.path,
                "role": roles.get(record.path),
                "size": record.size,
                "sha256": record.sha256.hex(),
            }
            for record in ordered
        ],
        "derived": [
            {
                "path": record.path,
                "size": record.size,
                "sha256": record.sha256.hex(),
                "derived_from": segments,
                "how": DERIVED_HOW,
            }
            for record in ordered
            if roles.get(record.path) == "derived"
        ],
        "claims": [{"check": check.value, "claim": claim} for check, claim in CLAIMS.items()],
    }


def hex_digest(value: object) -> bytes | None:
    """A lowercase-hex SHA-256 from JSON as bytes, or None if ``value`` is not one."""
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):
        return bytes.fromhex(value)
    return None
