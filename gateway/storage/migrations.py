"""What an upgrade of the database does: the schema version this software writes, and each
migration's statements named in a phrase, for ``gateway upgrade --check``."""

from __future__ import annotations

import re

from gateway.storage.schema import MIGRATIONS

SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this software writes (``PRAGMA user_version``)."""
_STATEMENT = re.compile(
    r"^\s*(CREATE\s+(?:UNIQUE\s+)?(?:TABLE|INDEX)\s+\w+(?:\s+ON\s+\w+)?"
    r"|ALTER\s+TABLE\s+\w+\s+(?:ADD\s+COLUMN\s+\w+|RENAME\s+COLUMN\s+\w+\s+TO\s+\w+"
    r"|RENAME\s+TO\s+\w+)"
    r"|DROP\s+(?:TABLE|INDEX)\s+\w+|UPDATE\s+\w+|DELETE\s+FROM\s+\w+|INSERT\s+INTO\s+\w+)",
    re.IGNORECASE,
)


def migration_steps(from_version: int) -> list[tuple[int, list[str]]]:
    """What each migration after ``from_version`` does, one phrase per statement
    (``CREATE TABLE incidents``, ``ALTER TABLE alerts ADD COLUMN arrival``, ...)."""
    steps = []
    for number, script in enumerate(MIGRATIONS[from_version:], start=from_version + 1):
        phrases = []
        for statement in script.split(";"):
            if not statement.strip():
                continue
            found = _STATEMENT.match(statement)
            phrases.append(
                " ".join(found.group(1).split()) if found else statement.split()[0].upper()
            )
        steps.append((number, phrases))
    return steps
