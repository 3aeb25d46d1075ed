"""Enrolment through the real command line and the real listener, for tests."""

from __future__ import annotations

import io
import re
import sys
import threading
from contextlib import redirect_stdout
from pathlib import Path

from badge.enrolment import HttpTransport, enrol
from gateway.cli import main
from gateway.datadir import GatewayDataDir
from gateway.enrolment.listener import EnrolmentListener


def issue_by_cli(root: Path, badge_id: str, *extra: str) -> str | None:
    """Run ``gateway enroll BADGE_ID --no-serve``; the code it printed (None if it failed)."""
    out = io.StringIO()
    with redirect_stdout(out):
        status = main(["--data", str(root), "enroll", badge_id, "--no-serve", *extra])
    sys.stdout.write(out.getvalue())
    if status != 0:
        return None
    match = re.search(r"code for badge \S+: (\S+)", out.getvalue())
    assert match is not None, out.getvalue()
    return match[1]


def enrol_over_http(root: Path, badge_id: str, bundle: Path, code: str, rotate: bool) -> None:
    """The badge enrols ``bundle``'s key with ``code`` through a listener on loopback."""
    done = threading.Event()
    listener = EnrolmentListener(GatewayDataDir(root), "127.0.0.1", 0)
    serving = threading.Thread(target=listener.serve_until, args=(done.is_set,))
    serving.start()
    try:
        enrol(bundle, badge_id, code, HttpTransport(listener.url), rotate=rotate)
    finally:
        done.set()
        serving.join()
        listener.close()


def enrol_by_cli(root: Path, badge_id: str, bundle: Path, *extra: str) -> int:
    """``gateway enroll`` issues a code, the badge enrols with it over HTTP; the exit status."""
    code = issue_by_cli(root, badge_id, *extra)
    if code is None:
        return 1
    enrol_over_http(root, badge_id, bundle, code, "--rotate" in extra)
    return 0
