"""Fixtures for badge tests: an enrolled badge with a gateway data directory to open its footage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from badge.config import BadgeConfig
from demo.enrolment import enroll_badge
from evidence.keys import CustodianPrivateKey, HpkeSuite
from gateway.datadir import GatewayDataDir


@dataclass(frozen=True)
class EnrolledBadge:
    """A badge bundle and the hospital that enrolled it."""

    gateway: GatewayDataDir
    bundle: Path
    custodian: CustodianPrivateKey

    def config_text(self, data_dir: Path, **sections: dict[str, object]) -> str:
        """A badge.toml for this badge, with small fast settings plus ``sections``."""
        base: dict[str, dict[str, object]] = {
            "badge": {"bundle": str(self.bundle), "data_dir": str(data_dir), "location": "ER 3"},
            "capture": {"width": 320, "height": 240, "segment_seconds": 1.0},
            "incident": {"pre_roll_seconds": 3, "post_roll_seconds": 2},
            "storage": {"max_bytes": 50_000_000},
        }
        for name, values in sections.items():
            base.setdefault(name, {}).update(values)
        lines = []
        for name, values in base.items():
            lines.append(f"[{name}]")
            lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
        return "\n".join(lines) + "\n"

    def config(self, data_dir: Path, **sections: dict[str, object]) -> BadgeConfig:
        """The parsed configuration."""
        path = data_dir.parent / "badge.toml"
        path.write_text(self.config_text(data_dir, **sections))
        return BadgeConfig.load(path)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


@pytest.fixture(scope="session")
def enrolled_badge(tmp_path_factory: pytest.TempPathFactory) -> EnrolledBadge:
    """A hospital with one enrolled badge, ``b1``."""
    root = tmp_path_factory.mktemp("hospital")
    gateway = GatewayDataDir(root / "gateway")
    gateway.initialise("Test Hospital", HpkeSuite.X25519, None)
    enroll_badge(gateway, "b1", root / "bundle")
    return EnrolledBadge(
        gateway, root / "bundle", CustodianPrivateKey.load(gateway.custodian_key_path)
    )
