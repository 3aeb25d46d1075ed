"""A real PKCS#11 token for tests: SoftHSM2 (Debian ``softhsm2``) with its own token directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from badge.hardware_key import TokenKey

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN_LABEL = "medbadge-test"  # noqa: S105 - a token's name
USER_PIN = "462913"


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SoftHSM2 configuration with one initialised token; its PIN file.

    Session-wide: the PKCS#11 library reads its configuration once per process.
    """
    if not MODULE.exists():
        pytest.fail(f"SoftHSM2 is missing ({MODULE}); run scripts/ensure-system-deps")
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    config = root / "softhsm2.conf"
    config.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(config)
    subprocess.run(
        [
            *("softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL),
            *("--so-pin", "31415926", "--pin", USER_PIN),
        ],
        check=True,
        capture_output=True,
    )
    pin = root / "user.pin"
    pin.write_text(USER_PIN + "\n")
    pin.chmod(0o600)
    return pin


def token_key(pin: Path, label: str) -> TokenKey:
    """Where the test token keeps the key ``label``."""
    return TokenKey(MODULE, TOKEN_LABEL, label, pin)
