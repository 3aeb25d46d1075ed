"""The README's main job, ``make demo``, runs end to end: real broker, gateway, badge, press."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_seals_uploads_and_receipts_an_incident(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"alert reached the gateway [\d.]+ ms after the press", result.stdout)
    # the console is its own process, started by the demo, answering on its own port
    assert re.search(r"security console \(answering\) at http://127\.0\.0\.1:\d+/", result.stdout)
    # the pre-roll leaves at the press: receipted while the post-roll is still being recorded
    pre_roll = re.search(
        r"pre-roll: (\d+) segments receipted \d+ ms after the press, (\w+)", result.stdout
    )
    assert pre_roll is not None and int(pre_roll.group(1)) >= 2, result.stdout
    assert pre_roll.group(2) == "before", result.stdout
    segments = re.search(r"(\d+) sealed segments receipted", result.stdout)
    assert segments is not None and int(segments.group(1)) >= 8  # 10 s + 6 s of 2 s segments
    assert "signature verified under the gateway's public key" in result.stdout
    assert "VERIFIED: every check holds." in result.stdout
    assert re.search(r"Complete: segments \d+\.\.\d+ \(\d+\), no gaps\.", result.stdout)
    vault = list((tmp_path / "demo" / "gateway" / "vault").rglob("*.mbseal"))
    assert len(vault) == int(segments.group(1))
