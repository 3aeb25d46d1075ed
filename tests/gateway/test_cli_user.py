"""``gateway user``: add (password prompted or from stdin, never from argv), list, disable,
reset-password (ending sessions), reset-2fa and unlock, each recorded in the custody log."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pyotp
import pytest

from gateway.cli import main
from gateway.console.auth import SessionStore
from gateway.console.login_limits import LoginLimiter
from gateway.console.second_factor import SecondFactor, SecretBox, second_factor_key_path
from gateway.console.users import UserDirectory
from gateway.datadir import GatewayDataDir

PASSWORD = "a long enough password"  # noqa: S105 - the test's password


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "gateway"
    assert main(["--data", str(root), "init", "--hospital", "CLI Hospital"]) == 0
    return root


def gateway_user(
    data: Path, *args: str, stdin: str = "", monkeypatch: pytest.MonkeyPatch | None = None
) -> int:
    if monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["--data", str(data), "user", *args])


def user_changes(data: Path) -> list[tuple[str, str]]:
    connection = sqlite3.connect(data / "gateway.db")
    try:
        rows = connection.execute(
            "SELECT actor, subject FROM custody_entries WHERE action = 'user-change'"
            " ORDER BY entry_id"
        ).fetchall()
    finally:
        connection.close()
    return [(str(actor), str(subject)) for actor, subject in rows]


def test_add_reads_the_password_from_stdin_or_a_prompt_never_argv(
    data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["--data", str(data), "user", "add", "olga", "--role", "officer", "--password", "x"])
    assert usage.value.code == 2
    added = gateway_user(
        data, "--operator", "it-desk", "add", "olga", "--role", "officer", "--password-stdin",
        stdin=PASSWORD + "\n", monkeypatch=monkeypatch,
    )  # fmt: skip
    assert added == 0
    answers = iter([PASSWORD, PASSWORD])
    monkeypatch.setattr("getpass.getpass", lambda _prompt: next(answers))
    assert gateway_user(data, "add", "carl", "--role", "custodian") == 0
    mismatched = iter([PASSWORD, PASSWORD + "!"])
    monkeypatch.setattr("getpass.getpass", lambda _prompt: next(mismatched))
    assert gateway_user(data, "add", "aida", "--role", "auditor") == 1
    assert "the two passwords differ" in capsys.readouterr().err
    short = gateway_user(
        data, "add", "adam", "--role", "admin", "--password-stdin",
        stdin="short\n", monkeypatch=monkeypatch,
    )  # fmt: skip
    assert short == 1 and "12 to 1024 characters" in capsys.readouterr().err
    assert gateway_user(data, "list") == 0
    listing = capsys.readouterr().out
    assert "olga  officer    active  off" in listing
    assert "carl  custodian  active  required, not set up" in listing
    assert "aida" not in listing and "adam" not in listing
    assert ("it-desk", "olga") in user_changes(data)


def test_reset_password_and_disable_end_sessions_and_unlock_clears_the_delay(
    data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, role in (("olga", "officer"), ("adam", "admin")):
        assert gateway_user(
            data, "add", name, "--role", role, "--password-stdin",
            stdin=PASSWORD + "\n", monkeypatch=monkeypatch,
        ) == 0  # fmt: skip
    storage = GatewayDataDir(data).storage()
    try:
        sessions = SessionStore(storage.sessions, idle_s=600, maximum_s=3600)
        directory = UserDirectory(storage.users)
        olga = directory.require("olga")
        token, _ = sessions.open(olga, "10.0.0.2")
        limiter = LoginLimiter(storage.login_failures)
        for _ in range(7):
            limiter.failed("olga", "10.0.0.66")
        factors = SecondFactor(
            storage.second_factors, SecretBox(second_factor_key_path(GatewayDataDir(data).keys))
        )
        secret = factors.begin("adam").secret
        factors.confirm("adam", pyotp.TOTP(secret).now())
    finally:
        storage.close()
    assert gateway_user(data, "list") == 0
    listing = capsys.readouterr().out
    assert "7 from 10.0.0.66 (waits" in listing
    assert "adam  admin    active  on (10 recovery codes)" in listing

    assert gateway_user(data, "unlock", "olga") == 0
    assert "1 address(es) cleared" in capsys.readouterr().out
    assert gateway_user(
        data, "reset-password", "olga", "--password-stdin",
        stdin="another long password\n", monkeypatch=monkeypatch,
    ) == 0  # fmt: skip
    assert gateway_user(data, "disable", "adam") == 1
    assert "last administrator" in capsys.readouterr().err
    assert gateway_user(data, "reset-2fa", "adam") == 0
    assert gateway_user(data, "disable", "olga") == 0
    assert gateway_user(data, "unlock", "nobody") == 1
    assert "no console user 'nobody'" in capsys.readouterr().err

    storage = GatewayDataDir(data).storage()
    try:
        sessions = SessionStore(storage.sessions, idle_s=600, maximum_s=3600)
        assert sessions.find(token) is None
        assert LoginLimiter(storage.login_failures).locks("olga") == []
        directory = UserDirectory(storage.users)
        assert directory.authenticate("olga", "another long password") is None  # disabled
        assert directory.require("olga").disabled
        assert not SecondFactor(
            storage.second_factors, SecretBox(second_factor_key_path(GatewayDataDir(data).keys))
        ).enrolled("adam")
    finally:
        storage.close()
    assert [subject for _, subject in user_changes(data)] == [
        "olga", "adam", "olga", "olga", "adam", "olga",
    ]  # fmt: skip
