"""The badge configuration: defaults, the documented example, and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from badge.config import BadgeConfig
from badge.errors import ConfigError

DOC = Path(__file__).resolve().parents[2] / "docs" / "badge-config.md"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "badge.toml"
    path.write_text(text)
    return path


def test_documented_example_is_the_defaults(tmp_path: Path) -> None:
    example = re.search(r"```toml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert example is not None
    assert BadgeConfig.load(write(tmp_path, example.group(1))) == BadgeConfig()


def test_values_are_read(tmp_path: Path) -> None:
    config = BadgeConfig.load(
        write(tmp_path, '[incident]\npre_roll_seconds = 30\n[badge]\nlocation = "ER"\n')
    )
    assert config.incident.pre_roll_seconds == 30.0
    assert config.badge.location == "ER"
    assert config.incident.post_roll_seconds == 120.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[incident]\npre_roll_seconds = 301\n",
            "incident.pre_roll_seconds = 301.0 is out of range",
        ),
        ("[incident]\npre_roll_seconds = 'x'\n", "incident.pre_roll_seconds must be a number"),
        ("[capture]\nsource = 'webcam'\n", "capture.source = 'webcam' is not one of"),
        ("[capture]\nfps = true\n", "capture.fps must be a whole number"),
        ("[capture]\nzoom = 2\n", "unknown key capture.zoom"),
        ("[cloud]\nx = 1\n", "unknown section"),
        ("[battery]\ngauge = 'bq27441'\n", "battery.gauge = 'bq27441' is not one of"),
        ("[battery]\naddress = 0x80\n", "battery.address = 128 is out of range"),
        ("[battery]\npoll_seconds = 0\n", "battery.poll_seconds = 0.0 is out of range"),
        ("[badge\n", "cannot be read"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        BadgeConfig.load(write(tmp_path, text))
    assert "badge.toml" in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        BadgeConfig.load(tmp_path / "absent.toml")
