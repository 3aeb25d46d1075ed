"""The verifier's report: what a package proves, or exactly what failed, for people and as JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from evidence.package.layout import CLAIMS, Check
from evidence.text import escape_unsafe
from evidence.verify.findings import Finding


@dataclass(frozen=True)
class Summary:
    """What the package establishes (fields stay None where it could not be established)."""

    incident_id: str | None = None
    badge_id: str | None = None
    wearer: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    segments: int = 0
    capture_start_ns: int | None = None
    capture_end_ns: int | None = None
    capture_error_ns: int | None = None
    """The bound, either way, on the capture times; None when they are the badge's claim."""
    capture_clock: str = "badge"
    """``gateway`` (the badge clock corrected by the offset the gateway measured) or ``badge``."""
    received_ns: int | None = None
    """Gateway time at which it held the last segment."""
    sealed_ns: int | None = None
    """The RFC 3161 time of the checkpoint that covers everything in the package."""
    sealed_accuracy_ns: int | None = None
    tsa_name: str | None = None
    exported_at_ns: int | None = None
    exported_by: str | None = None
    justification: str | None = None
    gateway_vkey: str | None = None
    ca_fingerprint: str | None = None
    """SHA-256 of the evidence CA certificate as ``openssl x509 -fingerprint -sha256`` shows it."""
    pinned_gateway_key: bool = False
    pinned_ca: bool = False
    badge_key_origins: tuple[str, ...] = ()
    """How the badge keys that signed the segments were made, as their enrolment entries say:
    ``badge-generated``, ``badge-hardware`` or ``gateway-generated``."""


@dataclass(frozen=True)
class VerificationReport:
    """The outcome of verifying one package."""

    location: str
    findings: tuple[Finding, ...]
    examined: Mapping[str, int]
    """How many items each check examined, by check name."""
    summary: Summary

    @property
    def verified(self) -> bool:
        """True when every check holds."""
        return not self.findings

    @property
    def failed_checks(self) -> frozenset[Check]:
        """The checks with at least one finding."""
        return frozenset(finding.check for finding in self.findings)

    def as_dict(self) -> dict[str, object]:
        """The report as one JSON-ready object."""
        return {
            "package": self.location,
            "verified": self.verified,
            "summary": asdict(self.summary),
            "checks": [
                {
                    "check": check.value,
                    "claim": claim,
                    "examined": self.examined.get(check.value, 0),
                    "failures": sum(1 for finding in self.findings if finding.check is check),
                }
                for check, claim in CLAIMS.items()
            ],
            "findings": [
                {
                    "check": finding.check.value,
                    "file": finding.file,
                    "seq": finding.seq,
                    "message": finding.message,
                }
                for finding in self.findings
            ],
        }

    def human(self) -> str:
        """A short report: what was proven, or every failure with where it is.

        Text from the package (names, reasons, file names) is shown with its control, bidi
        and zero-width characters escaped (``evidence.text``): an older package may hold
        them, and they must neither reorder nor split a line of the report.
        """
        lines = [f"medbadge evidence package {escape_unsafe(self.location)}"]
        if self.verified:
            lines.append("VERIFIED: every check holds.")
            lines += _proven(self.summary)
        else:
            count = len(self.findings)
            lines.append(f"NOT VERIFIED: {count} problem{'s' if count != 1 else ''} found.")
            lines += [f"  {escape_unsafe(finding.line())}" for finding in self.findings]
        lines += _provenance(self.summary)
        lines += _trust(self.summary)
        examined = ", ".join(
            f"{name} {count}" for name, count in sorted(self.examined.items()) if count
        )
        lines.append(f"Items examined per check: {examined}.")
        return "\n".join(lines) + "\n"


def _time(ns: int | None, digits: int = 3) -> str:
    if ns is None:
        return "an unknown time"
    seconds, fraction = divmod(ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC)
    text = f"{moment:%Y-%m-%d %H:%M:%S}"
    if digits:
        text += f".{fraction // 10 ** (9 - digits):0{digits}d}"
    return text + " UTC"


def _proven(summary: Summary) -> list[str]:
    badge, incident = (
        escape_unsafe(summary.badge_id or ""),
        escape_unsafe(summary.incident_id or ""),
    )
    wearer = f" (wearer {escape_unsafe(summary.wearer)})" if summary.wearer else ""
    exported_by, tsa = (
        escape_unsafe(summary.exported_by or ""),
        escape_unsafe(summary.tsa_name or ""),
    )
    if summary.capture_clock == "gateway" and summary.capture_error_ns is not None:
        clock = (
            f"± {summary.capture_error_ns / 1e9:.3f} s (gateway time: the badge's clock "
            "corrected by the offset the gateway measured)"
        )
    else:
        clock = "by the badge's own clock, which the gateway could not correct"
    accuracy = (
        "" if summary.sealed_accuracy_ns is None else f" ± {summary.sealed_accuracy_ns / 1e9:g} s"
    )
    return [
        f"  Clip from badge {badge}{wearer}, incident {incident}.",
        f"  Captured between {_time(summary.capture_start_ns)} and "
        f"{_time(summary.capture_end_ns)} {clock}.",
        "  Unaltered: every segment has the SHA-256 its badge-signed header gives.",
        f"  Complete: segments {summary.first_seq}..{summary.last_seq} "
        f"({summary.segments}), no gaps.",
        f"  Received by the gateway by {_time(summary.received_ns)}; sealed by the gateway no "
        f"later than {_time(summary.sealed_ns, 0)}{accuracy} (RFC 3161 time from "
        f"{tsa}).",
        f"  Exported by {exported_by} at {_time(summary.exported_at_ns)}: "
        f"{summary.justification!r}.",
    ]


_ORIGIN_TEXT = {
    "badge-hardware": "made inside the badge's secure hardware, which cannot export it",
    "badge-generated": "made by the badge itself; the hospital received only its public key",
}


def _provenance(summary: Summary) -> list[str]:
    """How the signing badge key was made, and plainly when that makes the signatures weaker."""
    lines = [
        f"Badge key ({origin}): {_ORIGIN_TEXT[origin]}."
        for origin in summary.badge_key_origins
        if origin in _ORIGIN_TEXT
    ]
    if any(origin not in _ORIGIN_TEXT for origin in summary.badge_key_origins):
        lines += [
            "WEAKER EVIDENCE: the badge key that signed this footage was made by the hospital's",
            "gateway (gateway-generated) and copied to the badge, so the hospital held it too",
            "and could have signed footage that no badge recorded. The signatures show the",
            "footage is unchanged since it was signed, not that the badge alone signed it.",
        ]
    return lines


def _trust(summary: Summary) -> list[str]:
    pinned = summary.pinned_gateway_key and summary.pinned_ca
    if pinned:
        return ["Trust: the gateway key and evidence CA are the ones given to the verifier."]
    return [
        "Trust rests on the gateway key and the evidence CA; compare them with the values the",
        "hospital publishes (or pass --gateway-key and --ca):",
        f"  gateway key   {summary.gateway_vkey or 'unknown'}",
        f"  evidence CA   SHA-256 {summary.ca_fingerprint or 'unknown'}",
    ]
