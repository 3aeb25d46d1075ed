"""Run benchmarks: ``python -m bench NAME [--json]``, or ``all``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from bench import alert, capture, console, ingest, seal, seal_latency, verify
from bench.report import Figure

BENCHMARKS: dict[str, Callable[[], list[Figure]]] = {
    "seal": seal.run,
    "capture": capture.run,
    "console": console.run,
    "ingest": ingest.run,
    "alert": alert.run,
    "seal-latency": seal_latency.run,
    "verify": verify.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the named benchmark(s) and print each figure (JSON with ``--json``)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", choices=[*BENCHMARKS, "all"])
    parser.add_argument("--json", action="store_true", help="print one JSON object per figure")
    args = parser.parse_args(argv)
    names = list(BENCHMARKS) if args.name == "all" else [args.name]
    for name in names:
        for figure in BENCHMARKS[name]():
            print(figure.as_json() if args.json else figure.human(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
