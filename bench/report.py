"""How every benchmark reports: one figure, the physical limit measured in the same run, a ratio."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Figure:
    """One benchmark result held against its limit."""

    name: str
    value: float
    unit: str
    limit_value: float
    ratio: float
    goal: str
    note: str = ""

    def human(self) -> str:
        """A one-line human report."""
        text = (
            f"{self.name}: {self.value:.3f} {self.unit} against a limit of "
            f"{self.limit_value:.3f} {self.unit}: ratio {self.ratio:.3f} (goal {self.goal})"
        )
        return f"{text}; {self.note}" if self.note else text

    def as_json(self) -> str:
        """The JSON object the ``--json`` flag prints."""
        fields = asdict(self)
        if not self.note:
            del fields["note"]
        return json.dumps(fields)


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    """Run ``work`` ``repeats`` times and return the median wall time in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
