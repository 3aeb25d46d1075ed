"""Shared pytest fixtures: a real mosquitto broker per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mosquitto import MosquittoProcess, running_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """A running mosquitto with accounts gateway, badge-a and badge-b (see DEFAULT_LOGINS)."""
    with running_broker(tmp_path / "broker") as process:
        yield process
