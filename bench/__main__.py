"""Run benchmarks: ``python -m bench NAME [--json]``, or ``all``."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence

from bench import alert, backup, capture, console, ingest, seal, seal_latency, verify, watch
from bench.radio import RadioLinkError
from bench.report import Figure

BENCHMARKS: dict[str, Callable[[], list[Figure]]] = {
    "seal": seal.run,
    "capture": capture.run,
    "console": console.run,
    "ingest": ingest.run,
    "alert": alert.run,
    "seal-latency": seal_latency.run,
    "seal-radio": seal_latency.run_over_radio,
    "verify": verify.run,
    "backup": backup.run,
    "watch": watch.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the named benchmark(s) and print each figure (JSON with ``--json``).

    A benchmark this machine cannot run (``seal-radio`` without root) is reported as not
    run; alone, that is exit status 2.
    """
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", choices=[*BENCHMARKS, "all"])
    parser.add_argument("--json", action="store_true", help="print one JSON object per figure")
    parser.add_argument(
        "--link-mbit",
        type=float,
        help=f"seal-radio: the emulated radio link's rate (default {seal_latency.RADIO_MBIT:g})",
    )
    parser.add_argument(
        "--presses",
        type=int,
        help=f"watch: how many presses (default {watch.PRESSES})",
    )
    parser.add_argument(
        "--badges",
        type=int,
        help=f"watch: how many badges connected (default {watch.BADGES})",
    )
    args = parser.parse_args(argv)
    names = list(BENCHMARKS) if args.name == "all" else [args.name]
    for name in names:
        runner = BENCHMARKS[name]
        if name == "seal-radio" and args.link_mbit is not None:
            runner = functools.partial(seal_latency.run_over_radio, rate_mbit=args.link_mbit)
        if name == "watch":
            runner = functools.partial(
                watch.run,
                presses=args.presses or watch.PRESSES,
                badges=args.badges or watch.BADGES,
            )
        try:
            figures = runner()
        except RadioLinkError as error:
            print(f"{name}: not run: {error}", file=sys.stderr, flush=True)
            if args.name != "all":
                return 2
            continue
        for figure in figures:
            print(figure.as_json() if args.json else figure.human(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
