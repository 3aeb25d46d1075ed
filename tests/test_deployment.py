"""docs/deployment.md, read as a hospital's IT team would follow it: every ``gateway``,
``badge`` and ``evidence`` command in it (and in the units it installs) parses with the
real command line, every unit it installs is shipped, and every gateway.toml and
badge.toml in it loads with the real configuration loaders."""

from __future__ import annotations

import argparse
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from badge.cli import _parser as badge_parser
from badge.config import BadgeConfig
from evidence.cli import _parser as evidence_parser
from gateway.cli import _parser as gateway_parser
from gateway.config import GatewayConfig

REPO = Path(__file__).resolve().parents[1]
RUNBOOK = REPO / "docs" / "deployment.md"
_BLOCK = re.compile(r"^ *```(\w*)\n(.*?)^ *```", re.MULTILINE | re.DOTALL)
_PROGRAM = re.compile(r"(?:^|/)(gateway|badge|evidence)$")
_SUBSTITUTION = re.compile(r"\$\(date [^)]*\)")


PARSERS = {"gateway": gateway_parser, "badge": badge_parser, "evidence": evidence_parser}


def blocks(kind: str) -> list[str]:
    """The text of each fenced block of ``kind`` (sh, toml, ini)."""
    return [text for language, text in _BLOCK.findall(RUNBOOK.read_text()) if language == kind]


def shell_commands() -> Iterator[list[str]]:
    """Each ``gateway``, ``badge`` or ``evidence`` invocation in the runbook's sh blocks and
    in the shipped units' ExecStart lines, as its argument list (the program first, sudo
    and pipes taken away)."""
    texts = [block.replace("\\\n", " ") for block in blocks("sh")]
    units = [path.read_text() for path in sorted((REPO / "systemd").rglob("*.service"))]
    for unit in units:
        for line in unit.splitlines():
            if line.startswith("ExecStart="):
                command = line.removeprefix("ExecStart=").replace("$$", "$").replace("%%", "%")
                texts.extend(shlex.split(command)[2:] if "/bin/sh -c" in command else [command])
    for text in texts:
        for raw in text.splitlines():
            line = _SUBSTITUTION.sub("20261204T023000Z", raw)
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token.strip("&|;<>()"):
                    words.append(token)
                    continue
                yield from _program(words)
                words = []


def _program(words: list[str]) -> Iterator[list[str]]:
    """``words`` without a leading sudo [-u USER] or exec, if it runs one of our programs."""
    while words and words[0] in ("sudo", "exec"):
        words = words[3:] if words[1:2] == ["-u"] else words[1:]
    if words and _PROGRAM.search(words[0]):
        yield words


def test_the_runbook_names_the_real_commands() -> None:
    commands = list(shell_commands())
    programs = {Path(words[0]).name for words in commands}
    assert programs == {"gateway", "badge", "evidence"}
    subcommands = {
        name
        for action in gateway_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    }
    used = {word for words in commands for word in words[1:] if word in subcommands}
    # the runbook covers what an operator does: set up, enrol, back up, restore, upgrade
    assert {"init", "enroll", "broker-config", "backup", "restore", "upgrade"} <= used
    for words in commands:
        parser = PARSERS[Path(words[0]).name]()
        try:
            parser.parse_args(words[1:])
        except SystemExit as exited:
            assert exited.code == 0, f"docs/deployment.md: {shlex.join(words)} does not parse"


@pytest.mark.parametrize("text", [t for t in blocks("toml") if "[badge]" not in t])
def test_every_gateway_toml_in_the_runbook_loads(text: str, tmp_path: Path) -> None:
    GatewayConfig.from_mapping(tmp_path, tomllib.loads(text))


@pytest.mark.parametrize("text", [t for t in blocks("toml") if "[badge]" in t])
def test_every_badge_toml_in_the_runbook_loads(text: str) -> None:
    BadgeConfig.from_mapping(tomllib.loads(text))


def test_every_unit_the_runbook_installs_is_shipped() -> None:
    text = RUNBOOK.read_text()
    installed = set(re.findall(r"/root/medbadge/(systemd/[\w./-]+)", text))
    installed |= set(re.findall(r"install -m 0644 (systemd/[\w./-]+)", text))
    assert "systemd/medbadge-backup.timer" in installed
    assert "systemd/medbadge-console.service" in installed
    missing = {name for name in installed if not (REPO / name).is_file()}
    assert missing == set()


def test_the_readme_and_operations_link_the_runbook() -> None:
    for name in ("README.md", "docs/operations.md"):
        assert "deployment.md" in (REPO / name).read_text(), name
