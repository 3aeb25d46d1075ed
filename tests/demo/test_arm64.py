"""The pure parts of ``make check-arm64``: its commands, the binfmt check, the cache check."""

from __future__ import annotations

from pathlib import Path

from demo.arm64 import (
    READY_STAMP,
    VENV,
    aarch64_registered,
    chroot_command,
    debootstrap_command,
    install_commands,
    needs_hosts,
    root_env,
    root_is_ready,
)

REGISTERED = """enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: POF
offset 0
magic 7f454c460201010000000000000000000200b700
"""


def test_binfmt_counts_only_an_enabled_entry_with_the_fix_binary_flag() -> None:
    assert aarch64_registered(REGISTERED)
    assert not aarch64_registered(REGISTERED.replace("flags: POF", "flags: PO"))
    assert not aarch64_registered(REGISTERED.replace("enabled", "disabled", 1))
    assert not aarch64_registered("")


def test_a_half_built_root_is_not_taken_for_a_cached_one(tmp_path: Path) -> None:
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / "python3").write_text("")
    assert not root_is_ready(tmp_path)  # debootstrap did not finish: no stamp
    (tmp_path / READY_STAMP).write_text("done\n")
    assert root_is_ready(tmp_path)
    (tmp_path / "usr" / "bin" / "python3").unlink()
    assert not root_is_ready(tmp_path)


def test_debootstrap_builds_a_bookworm_arm64_root_with_python(tmp_path: Path) -> None:
    command = debootstrap_command(tmp_path / "root")
    assert command[:3] == ["debootstrap", "--arch=arm64", "--variant=minbase"]
    assert "bookworm" in command and str(tmp_path / "root") in command
    include = next(part for part in command if part.startswith("--include="))
    assert {"python3", "python3-venv", "python3-pip"} <= set(include[10:].split(","))


def test_commands_in_the_root_get_only_the_environment_given() -> None:
    command = chroot_command(Path("/r"), ["uname", "-m"], {"PATH": "/bin", "HOME": "/root"})
    assert command == [
        *("chroot", "/r", "/usr/bin/env", "-i"),
        *("HOME=/root", "PATH=/bin", "uname", "-m"),
    ]
    env = root_env()
    assert env["PIP_CERT"].startswith("/etc/ssl/") and "PIP_FIND_LINKS" not in env


def test_the_install_is_the_runbooks_venv_with_system_site_packages() -> None:
    venv, replace, extra = install_commands("medbadge-0.1.0-py3-none-any.whl")
    assert f"python3 -m venv --system-site-packages {VENV}" in venv[-1]
    assert replace[-1].endswith("medbadge-0.1.0-py3-none-any.whl") and "--no-deps" in replace
    assert extra[0] == f"{VENV}/bin/pip" and extra[-2].endswith(".whl[badge]")
    assert extra[-1] == "numpy<2"  # as the runbook pins it on Raspberry Pi OS


def test_a_root_without_localhost_in_its_hosts_gets_one() -> None:
    assert needs_hosts(None) and needs_hosts("") and needs_hosts("# localhost\n")
    assert needs_hosts("127.0.1.1 localhost-not\n")
    assert not needs_hosts("127.0.0.1\tlocalhost\n")
    assert not needs_hosts("::1 ip6-localhost localhost # loopback\n")
