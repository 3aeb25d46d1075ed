"""The outbox keeps alerts and incidents across restarts, alerts first, each once."""

from __future__ import annotations

from pathlib import Path

from badge.outbox import Outbox


def test_survives_reopen_and_orders_alerts_first(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    assert outbox.put("incident", "i1", b"record-1")
    assert outbox.put("alert", "i2", b"alert-2")
    assert not outbox.put("alert", "i2", b"alert-2 again")
    outbox.close()  # as if the badge lost power after put returned

    reopened = Outbox(path)
    items = reopened.pending()
    assert [(item.kind, item.key, item.payload) for item in items] == [
        ("alert", "i2", b"alert-2"),
        ("incident", "i1", b"record-1"),
    ]
    reopened.note_attempt(items[0].item_id)
    reopened.done(items[1].item_id)
    assert [(item.key, item.attempts) for item in reopened.pending()] == [("i2", 1)]
