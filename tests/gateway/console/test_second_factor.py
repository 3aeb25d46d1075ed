"""The second factor: TOTP codes computed from the secret at controlled times (a ±1 step
window, no reuse), recovery codes that work once, secrets sealed away from a database copy,
and the set-up a custodian or administrator must go through at first login."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest

from gateway.console.second_factor import SecondFactor, SecretBox
from gateway.console.users import Role, UserDirectory
from gateway.errors import ConsoleError
from gateway.storage import Storage, StorageSettings, open_storage
from tests.gateway.console_support import (
    PASSWORD,
    SECRETS,
    ConsoleHarness,
    WebClient,
    csrf_of,
    one_time_code,
    running_console,
)

T0 = 1_800_000_000.0  # a step boundary: 1_800_000_000 / 30 is whole
STEP0 = int(T0) // 30


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def at_step(self, step: int) -> None:
        self.now = step * 30 + 7.0


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    opened = open_storage(StorageSettings(tmp_path / "gateway.db", tmp_path / "vault"))
    UserDirectory(opened.users).create("carl", PASSWORD, Role.CUSTODIAN, created_by="test")
    try:
        yield opened
    finally:
        opened.close()


def code(secret: str, step: int) -> str:
    return str(pyotp.TOTP(secret).generate_otp(step))


def enrolled(storage: Storage, tmp_path: Path, clock: Clock) -> tuple[SecondFactor, str, list[str]]:
    factors = SecondFactor(
        storage.second_factors, SecretBox(tmp_path / "second-factor.key"), clock=clock
    )
    secret = factors.begin("carl").secret
    assert not factors.enrolled("carl")
    with pytest.raises(ConsoleError, match="not the one the authenticator shows"):
        factors.confirm("carl", code(secret, STEP0 + 5))
    recovery = factors.confirm("carl", code(secret, STEP0))
    return factors, secret, recovery


def test_codes_of_the_step_either_side_work_once_and_never_an_older_one(
    storage: Storage, tmp_path: Path
) -> None:
    clock = Clock()
    factors, secret, _ = enrolled(storage, tmp_path, clock)
    assert factors.verify("carl", code(secret, STEP0)) is None  # spent by the set-up
    clock.at_step(STEP0 + 10)
    assert factors.verify("carl", code(secret, STEP0 + 8)) is None  # two steps behind
    assert factors.verify("carl", code(secret, STEP0 + 12)) is None  # two steps ahead
    assert factors.verify("carl", code(secret, STEP0 + 9)) == "totp"  # one behind
    assert factors.verify("carl", code(secret, STEP0 + 9)) is None  # used
    assert factors.verify("carl", code(secret, STEP0 + 11)) == "totp"  # one ahead
    assert factors.verify("carl", code(secret, STEP0 + 10)) is None  # older than one used
    clock.at_step(STEP0 + 12)
    assert factors.verify("carl", code(secret, STEP0 + 12)) == "totp"
    assert factors.state("carl", Role.CUSTODIAN).summary == "on (10 recovery codes)"


def test_recovery_codes_are_single_use_and_kept_only_hashed(
    storage: Storage, tmp_path: Path
) -> None:
    clock = Clock()
    factors, secret, recovery = enrolled(storage, tmp_path, clock)
    assert len(recovery) == 10 and len(set(recovery)) == 10
    assert all(re.fullmatch(r"([a-z2-9]{4}-){3}[a-z2-9]{4}", item) for item in recovery)
    assert factors.verify("carl", recovery[0].upper().replace("-", " ")) == "recovery-code"
    assert factors.verify("carl", recovery[0]) is None
    assert factors.verify("carl", "not-a-code-at-all") is None
    assert factors.state("carl", Role.CUSTODIAN).recovery_codes_left == 9
    replaced = factors.new_recovery_codes("carl")
    assert factors.verify("carl", recovery[1]) is None and factors.verify("carl", replaced[1])
    storage.close()
    copy = (tmp_path / "gateway.db").read_bytes()
    for text in (secret, *replaced, *recovery):
        assert text.encode() not in copy and text.replace("-", "").encode() not in copy


def test_the_secret_does_not_open_without_its_key(storage: Storage, tmp_path: Path) -> None:
    clock = Clock()
    factors, secret, _ = enrolled(storage, tmp_path, clock)
    assert (tmp_path / "second-factor.key").stat().st_mode & 0o777 == 0o600
    other = SecondFactor(storage.second_factors, SecretBox(tmp_path / "another.key"), clock=clock)
    clock.at_step(STEP0 + 1)
    with pytest.raises(ConsoleError, match="restored without its key"):
        other.verify("carl", code(secret, STEP0 + 1))
    factors.reset("carl")
    assert not factors.enrolled("carl")
    assert factors.state("carl", Role.CUSTODIAN).summary == "required, not set up"


@pytest.fixture
def console(tmp_path: Path) -> Iterator[ConsoleHarness]:
    with running_console(tmp_path) as harness:
        yield harness


def secret_on(page: str) -> str:
    found = re.search(r'id="totp-secret">([A-Z2-7]+)<', page)
    assert found is not None, page[:800]
    return found.group(1)


def now_code(secret: str) -> str:
    return pyotp.TOTP(secret).now()


def test_a_new_administrator_sets_up_totp_before_anything_else(console: ConsoleHarness) -> None:
    storage = console.hospital.data_dir.storage()
    try:
        UserDirectory(storage.users).create("nadia", PASSWORD, Role.ADMIN, created_by="test")
    finally:
        storage.close()
    admin = WebClient(console.url)
    first = admin.login("nadia")
    assert first.status == 303 and first.headers["location"] == "/account/second-factor"
    assert admin.request("/badges").headers["location"] == "/account/second-factor"
    assert admin.request("/api/badges").status == 403
    intro = admin.request("/account/second-factor")
    assert "needs two-step login" in intro.text
    scan = admin.request("/account/second-factor/begin", {"csrf": csrf_of(intro.text)})
    assert scan.status == 200 and "otpauth://totp/" in scan.text and "<svg" in scan.text
    secret = secret_on(scan.text)
    token = csrf_of(scan.text)
    wrong = admin.request("/account/second-factor/confirm", {"csrf": token, "code": "12345x"})
    assert wrong.status == 400 and admin.request("/badges").status == 303
    step = int(time.time()) // 30
    done = admin.request(
        "/account/second-factor/confirm", {"csrf": token, "code": code(secret, step)}
    )
    assert done.status == 200
    recovery = re.findall(r"<li><code>([a-z2-9-]+)</code></li>", done.text)
    assert len(recovery) == 10
    assert admin.request("/badges").status == 200  # the same session now works
    assert WebClient(console.url).login("nadia").status == 401  # no code: refused
    reused = WebClient(console.url).login("nadia", code=code(secret, step))
    assert reused.status == 401  # the set-up's code was spent
    later = WebClient(console.url)
    assert later.login("nadia", code=code(secret, step + 1)).headers["location"] == "/badges"
    rescued = WebClient(console.url)
    assert rescued.login("nadia", code=recovery[3]).status == 303
    assert WebClient(console.url).login("nadia", code=recovery[3]).status == 401
    users = later.request("/users").text
    assert re.search(r"nadia</td>.*?on \(9 recovery codes\)", users, re.DOTALL)
    assert re.search(r"olga</td>.*?<td class=\"second-factor\">off</td>", users, re.DOTALL)


def test_an_officer_may_log_in_without_one_and_set_one_up(console: ConsoleHarness) -> None:
    officer = WebClient(console.url)
    assert officer.login("olga").headers["location"] == "/alerts"
    page = officer.request("/account/second-factor")
    assert "Two-step login: off." in page.text
    scan = officer.request("/account/second-factor/begin", {"csrf": csrf_of(page.text)})
    secret = secret_on(scan.text)
    confirm = {"csrf": csrf_of(scan.text), "code": now_code(secret)}
    assert officer.request("/account/second-factor/confirm", confirm).status == 200
    assert WebClient(console.url).login("olga").status == 401


def test_new_recovery_codes_need_a_code_and_wrong_ones_are_slowed(console: ConsoleHarness) -> None:
    custodian = WebClient(console.url)
    assert custodian.login("carl").status == 303
    token = custodian.csrf("/account/second-factor")
    code_now = one_time_code(SECRETS[console.url]["carl"])
    renewed = custodian.request("/account/recovery-codes", {"csrf": token, "code": code_now})
    assert renewed.status == 200
    assert len(re.findall(r"<li><code>([a-z2-9-]+)</code></li>", renewed.text)) == 10
    for number in range(5):
        wrong = custodian.request(
            "/account/recovery-codes", {"csrf": token, "code": f"00000{number}"}
        )
        assert wrong.status == 400 and "six-digit code" in wrong.text
    slowed = custodian.request("/account/recovery-codes", {"csrf": token, "code": "123456"})
    assert slowed.status == 400 and "too many wrong codes" in slowed.text
