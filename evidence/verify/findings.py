"""Verification findings: which check failed, on which file or segment, and why, in one sentence."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from evidence.package.layout import Check


@dataclass(frozen=True)
class Finding:
    """One thing that does not hold, with where it was found."""

    check: Check
    message: str
    file: str | None = None
    seq: int | None = None

    def line(self) -> str:
        """``[check] file (seq N): message`` for the human report."""
        where = " ".join(
            part for part in (self.file, None if self.seq is None else f"(seq {self.seq})") if part
        )
        return f"[{self.check}] {where + ': ' if where else ''}{self.message}"


@dataclass
class Findings:
    """What a verification found so far, and how many items each check examined."""

    items: list[Finding] = field(default_factory=list)
    examined: Counter[Check] = field(default_factory=Counter)

    def fail(
        self, check: Check, message: str, *, file: str | None = None, seq: int | None = None
    ) -> None:
        """Record that ``check`` does not hold for ``file`` / ``seq``."""
        self.items.append(Finding(check, message, file, seq))

    def examine(self, check: Check, count: int = 1) -> None:
        """Count ``count`` items as examined by ``check`` (whether or not they pass)."""
        self.examined[check] += count

    def failed(self, check: Check) -> bool:
        """Whether any finding is for ``check``."""
        return any(item.check is check for item in self.items)
