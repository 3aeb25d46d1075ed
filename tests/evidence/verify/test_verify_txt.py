"""VERIFY.txt run literally, under dash, with nothing but coreutils and OpenSSL on PATH.

On a genuine package every command succeeds; when one segment's video is replaced by another
incident's and SHA256SUMS is written anew (what anyone can do), the command that ties that
segment's .ts to its signed header fails and names the segment.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from evidence.hashing import sha256
from evidence.package.instructions import commands
from evidence.package.layout import CHECKSUMS, CLIP, INSTRUCTIONS, FileRecord, format_checksums
from tests.gateway.badge_messages import make_hospital
from tests.gateway.court_package import deliver_incident, export, record_footage

SEGMENT_42 = "segments/0000000042"


@dataclass(frozen=True)
class Unpacked:
    """The main package and the badge's next incident, each unpacked."""

    main: Path
    later: Path


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Unpacked:
    root = tmp_path_factory.mktemp("verify-txt")
    hospital = make_hospital(root)
    first = deliver_incident(hospital, record_footage(4.0))
    deliver_incident(
        hospital, record_footage(3.0), incident_id="inc-0418", first_seq=44, after=first
    )
    folders = {}
    for incident in ("inc-0417", "inc-0418"):
        export(hospital, incident, root / f"{incident}.zip", derived_mp4=False)
        with zipfile.ZipFile(root / f"{incident}.zip") as archive:
            archive.extractall(root / incident)
        folders[incident] = root / incident
    return Unpacked(folders["inc-0417"], folders["inc-0418"])


@pytest.fixture(scope="module")
def standard_tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding only GNU coreutils and openssl, to be all of PATH."""
    listed = subprocess.run(
        ["dpkg", "-L", "coreutils"], capture_output=True, text=True, check=True
    ).stdout.split()
    tools = tmp_path_factory.mktemp("bin")
    for path in (Path(line) for line in listed):
        if path.parent.name == "bin" and path.is_file():
            (tools / path.name).symlink_to(path)
    openssl = shutil.which("openssl")
    assert openssl is not None and shutil.which("dash") is not None
    (tools / "openssl").symlink_to(openssl)
    assert not (tools / "cmp").exists() and not (tools / "grep").exists()
    return tools


def run_verify_txt(folder: Path, tools: Path) -> list[subprocess.CompletedProcess[str]]:
    """Every command of the folder's VERIFY.txt, each run by dash in the folder."""
    dash = shutil.which("dash")
    assert dash is not None
    return [
        subprocess.run(
            [dash, "-c", line],
            cwd=folder,
            env={"PATH": str(tools), "LC_ALL": "C"},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        for line in commands((folder / INSTRUCTIONS).read_text())
    ]


def test_every_command_holds_on_a_genuine_package(unpacked: Unpacked, standard_tools: Path) -> None:
    results = run_verify_txt(unpacked.main, standard_tools)
    assert len(results) == 1 + 3 + 4 + 4 + 1 + 1 + 2 + 2
    assert [(r.args[2], r.returncode, r.stderr) for r in results if r.returncode] == []
    outputs = [result.stdout for result in results]
    assert outputs[8:12] == [
        f"segment {seq}: segments/{seq:010d}.ts matches its signed header\n"
        for seq in range(40, 44)
    ]
    assert outputs[12] == "keys/gateway-signing.pub and keys/gateway.vkey are one key\n"
    assert outputs[14].strip().endswith("Verification: OK")


def test_a_swapped_segment_with_sha256sums_written_anew_fails_naming_it(
    unpacked: Unpacked, standard_tools: Path, tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(unpacked.main, tmp_path / "swapped"))
    shutil.copy(unpacked.later / "segments/0000000044.ts", folder / f"{SEGMENT_42}.ts")
    segments = sorted(folder.glob("segments/*.ts"))
    (folder / CLIP).write_bytes(b"".join(path.read_bytes() for path in segments))
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    records = [
        FileRecord(path, (folder / path).stat().st_size, sha256((folder / path).read_bytes()))
        for path in paths
        if path != CHECKSUMS
    ]
    (folder / CHECKSUMS).write_bytes(format_checksums(records))
    results = run_verify_txt(folder, standard_tools)
    failing = [result for result in results if result.returncode]
    assert results[0].returncode == 0  # SHA256SUMS alone is fooled
    assert [result.stdout for result in failing] == [
        "FAILED: segment 42: segments/0000000042.ts is not the video its signed header describes\n"
    ]
    assert results[3].stdout == "clip.ts is the segments joined\n"  # the forger joined anew


def test_a_gateway_vkey_of_another_key_fails_the_same_key_command(
    unpacked: Unpacked, standard_tools: Path, tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(unpacked.main, tmp_path / "other-key"))
    name, key_id, key = (folder / "keys/gateway.vkey").read_text().strip().split("+", 2)
    raw = bytearray(base64.b64decode(key))
    raw[-1] ^= 1
    (folder / "keys/gateway.vkey").write_text(f"{name}+{key_id}+{base64.b64encode(raw).decode()}\n")
    results = run_verify_txt(folder, standard_tools)
    failing = [result.stdout for result in results if result.returncode]
    assert len(failing) == 2 and "keys/gateway.vkey: FAILED" in failing[0]
    assert failing[1] == (
        "FAILED: keys/gateway-signing.pub and keys/gateway.vkey are different keys\n"
    )
