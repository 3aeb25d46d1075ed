"""VERIFY.txt: the plain-language page that tells a court clerk how to check a package.

The page is rendered from facts the verifier can establish itself, so ``evidence verify``
renders it again and requires the package's copy to be byte for byte the same: nobody can
edit the instructions to leave a check out. Every line starting with ``    $ `` is one shell
command, run in the unpacked package; each must succeed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from evidence.package.layout import (
    CA_CERTIFICATE,
    CHECKPOINT_NOTE,
    CHECKPOINT_TOKEN,
    CHECKSUMS,
    CLIP,
    GATEWAY_KEY,
    GATEWAY_VKEY,
    TSA_CERTIFICATE,
)
from evidence.segment import SIGNATURE_CONTEXT

COMMAND_PREFIX = "    $ "
"""How a command line starts in VERIFY.txt."""


@dataclass(frozen=True)
class SignedSegment:
    """One segment as the instructions name it: its file stem and the badge key that signed it."""

    stem: str
    key_path: str
    algorithm: str = "ed25519"
    """The key's algorithm: ``ed25519`` or ``ecdsa-p256`` (decision 1901)."""


@dataclass(frozen=True)
class InstructionFacts:
    """Everything VERIFY.txt mentions that differs from one package to the next."""

    incident_id: str
    badge_id: str
    segments: Sequence[SignedSegment]
    timestamp_seconds: int
    """The checkpoint time-stamp's genTime, in whole seconds since the epoch."""


def render_instructions(facts: InstructionFacts) -> bytes:
    """The VERIFY.txt of a package with ``facts``."""
    stamped = datetime.fromtimestamp(facts.timestamp_seconds, UTC)
    lines = [
        f"EVIDENCE PACKAGE: incident {facts.incident_id}, recorded by badge {facts.badge_id}",
        "",
        *_WHAT_THIS_IS,
        "",
        *_HOW_TO_START,
        "",
        "1. No file was changed after the export: every line must end in OK.",
        "",
        f"{COMMAND_PREFIX}sha256sum -c {CHECKSUMS}",
        "",
        f"2. {CLIP} is exactly the segments joined in order: the first two commands print the",
        "   same hash, the third says so.",
        "",
        f"{COMMAND_PREFIX}cat segments/*.ts | sha256sum",
        f"{COMMAND_PREFIX}sha256sum < {CLIP}",
        f'{COMMAND_PREFIX}cat segments/*.ts | cmp - {CLIP} && echo "{CLIP} is the segments joined"',
        "",
        *_signature_intro(facts.segments),
        "",
        *[_segment_command(segment) for segment in facts.segments],
        "",
        "4. The gateway signed the ledger checkpoint (the summary of its tamper-evident log",
        "   that every ledger entry in this package is proven to be part of): the command",
        "   prints 'Signature Verified Successfully'.",
        "",
        _checkpoint_command(),
        "",
        "5. The checkpoint existed at the time its RFC 3161 time-stamp gives, as certified by",
        "   the hospital's evidence CA: the first command prints 'Verification: OK', the",
        "   second shows the time-stamp. The -attime value is the time-stamp's own time",
        f"   ({stamped:%Y-%m-%d %H:%M:%S} UTC), so the check still holds after the time-stamping",
        "   certificate expires. OpenSSL may warn that certs/tsa.crt 'is not a CA cert': it is",
        "   not meant to be one, and the warning does not affect the result.",
        "",
        f"{COMMAND_PREFIX}openssl ts -verify -digest $(sha256sum {CHECKPOINT_NOTE} | cut -d' ' -f1)"
        f" -in {CHECKPOINT_TOKEN} -CAfile {CA_CERTIFICATE} -untrusted {TSA_CERTIFICATE}"
        f" -attime {facts.timestamp_seconds}",
        f"{COMMAND_PREFIX}openssl ts -reply -in {CHECKPOINT_TOKEN} -text",
        "",
        *_WHAT_ELSE,
        "",
        *_WHOM_TO_TRUST,
        "",
        f"{COMMAND_PREFIX}cat {GATEWAY_VKEY}",
        f"{COMMAND_PREFIX}openssl x509 -in {CA_CERTIFICATE} -noout -fingerprint -sha256",
    ]
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def commands(text: str) -> list[str]:
    """The command lines of a VERIFY.txt, without their ``$`` prefix, in order."""
    return [
        line[len(COMMAND_PREFIX) :] for line in text.splitlines() if line.startswith(COMMAND_PREFIX)
    ]


def _signature_intro(segments: Sequence[SignedSegment]) -> list[str]:
    lines = [
        "3. The badge signed the description (.header) of every segment: each command prints",
        "   'Signature Verified Successfully'. What the badge signs is the label",
        f"   '{SIGNATURE_CONTEXT}', a zero byte, then the .header file.",
    ]
    if any(segment.algorithm == "ecdsa-p256" for segment in segments):
        lines += [
            "   This badge's key is ECDSA P-256, held in its secure hardware: its signatures",
            "   are r then s (32 bytes each), which the commands turn into the DER form openssl",
            "   reads; for those, openssl prints 'Verified OK'.",
        ]
    return lines


def _segment_command(segment: SignedSegment) -> str:
    if segment.algorithm == "ecdsa-p256":
        return _p256_segment_command(segment)
    # OpenSSL 3 signs and verifies Ed25519 in one shot and needs a regular file to do so,
    # so the signed bytes go to a temporary file first.
    return (
        f"{COMMAND_PREFIX}f=$(mktemp) && {{ printf '{SIGNATURE_CONTEXT}\\0'; "
        f'cat {segment.stem}.header; }} > "$f" && openssl pkeyutl -verify -pubin '
        f'-inkey {segment.key_path} -rawin -in "$f" -sigfile {segment.stem}.sig && rm "$f"'
    )


def _p256_segment_command(segment: SignedSegment) -> str:
    # r and s become the two INTEGERs of a DER SEQUENCE through openssl's own ASN.1
    # generator, so nothing but coreutils and openssl is needed.
    signature = f"{segment.stem}.sig"
    as_hex = "| od -An -v -tx1 | tr -d ' \\n'"
    return (
        f"{COMMAND_PREFIX}f=$(mktemp) && {{ printf '{SIGNATURE_CONTEXT}\\0'; "
        f'cat {segment.stem}.header; }} > "$f" && '
        "printf 'asn1=SEQUENCE:sig\\n[sig]\\nr=INTEGER:0x%s\\ns=INTEGER:0x%s\\n' "
        f'"$(head -c 32 {signature} {as_hex})" "$(tail -c 32 {signature} {as_hex})" '
        '> "$f.cnf" && openssl asn1parse -genconf "$f.cnf" -out "$f.der" -noout && '
        f'openssl dgst -sha256 -verify {segment.key_path} -signature "$f.der" "$f" && '
        'rm "$f" "$f.cnf" "$f.der"'
    )


def _checkpoint_command() -> str:
    # A signed note is its text, a blank line, then "— <name> base64(key id || signature)";
    # the checkpoint text is three lines, the key id four bytes.
    return (
        f'{COMMAND_PREFIX}f=$(mktemp) && head -n 3 {CHECKPOINT_NOTE} > "$f" && '
        f"tail -n 1 {CHECKPOINT_NOTE} | cut -d' ' -f3 | base64 -d | tail -c 64 > \"$f.sig\" && "
        f'openssl pkeyutl -verify -pubin -inkey {GATEWAY_KEY} -rawin -in "$f" '
        f'-sigfile "$f.sig" && rm "$f" "$f.sig"'
    )


_WHAT_THIS_IS = (
    "What this is",
    "------------",
    "This package was exported by the medbadge gateway of the hospital named in",
    "certs/evidence-ca.crt. It holds the video and sound a staff member's body-worn badge",
    "recorded around an alert, exactly as the badge recorded them, and everything needed",
    "to check that they are authentic and complete:",
    "",
    "  segments/         the recording as the badge made it: short MPEG-TS files (.ts),",
    "                    each with the badge's signed description (.header, .sig)",
    "  clip.ts           the same segments joined into one file (VLC and most players)",
    "  derived/clip.mp4  a copy for web browsers, repackaged without re-encoding; a",
    "                    convenience copy, not the evidence",
    "  incident.record   the badge's signed record of the incident and its segments",
    "  alert.record      the badge's signed alert, if the gateway received one",
    "  receipts/         the gateway's signed receipts for what it received",
    "  ledger/           entries of the gateway's tamper-evident log (RFC 9162), proofs",
    "                    that they are in it, the log's signed checkpoint and its RFC 3161",
    "                    time-stamp",
    "  keys/, certs/     the public keys and certificates that check the signatures",
    "  custody.json      who exported or viewed this evidence, when and why",
    "  manifest.json     every file with its size, SHA-256 and role",
    "  SHA256SUMS        the same hashes, in the format of the standard sha256sum tool",
)

_HOW_TO_START = (
    "How to check it with standard tools",
    "-----------------------------------",
    "You need a terminal with GNU coreutils (sha256sum, cmp, base64) and OpenSSL 3.",
    "Unpack the zip into an empty folder and run each command below in that folder, for",
    "example after: unzip PACKAGE.zip -d evidence && cd evidence",
    "Lines starting with $ are commands: type them without the $. Every command must",
    "succeed; any FAILED, 'differ' or error message means the package was altered.",
)

_WHAT_ELSE = (
    "What else to check, and how",
    "---------------------------",
    "The commands above show that the files are unaltered and signed. The open-source",
    "verifier (pip install medbadge; then: evidence verify PACKAGE.zip) checks all of the",
    "above and also that:",
    "  - the segments are complete: each header names the SHA-256 of the header before it",
    "    and its sequence number, so a removed, added or reordered segment is reported",
    "    with its sequence numbers;",
    "  - every segment's bytes have the SHA-256 and size its signed header gives;",
    "  - the incident record is signed by the badge and names exactly these segments;",
    "  - every ledger entry describes the file it is about, and its inclusion proof leads",
    "    to the root of the signed checkpoint (RFC 9162 hashing; any implementation of",
    "    Certificate Transparency proofs can check them too);",
    "  - the badge's keys are the ones the ledger records as enrolled, and it reports how",
    "    each was made: by the badge (badge-generated), inside its secure hardware",
    "    (badge-hardware), or, for badges enrolled before badges made their own keys, by",
    "    the hospital's gateway (gateway-generated: the hospital held that key too, so its",
    "    signatures are weaker evidence);",
    "  - the receipts are signed by the gateway, and custody.json is the custody log's",
    "    entries for this incident, each proven to be in the ledger.",
    "It prints what was proven (badge, times, segments) or exactly what failed and where.",
)

_WHOM_TO_TRUST = (
    "Whom this relies on",
    "-------------------",
    "All of this proves that the files are what the hospital's gateway received, recorded",
    "and signed. Compare the gateway's key and the evidence CA's fingerprint printed by",
    "the two commands below with those the hospital publishes or states under oath.",
)
