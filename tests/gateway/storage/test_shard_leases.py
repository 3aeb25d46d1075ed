"""Shard leases on both backends: one holder at a time, renewed by its holder, taken over
once expired; and the badge-to-shard split, stable and spread."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.storage import Storage, StorageSettings, open_storage
from gateway.storage.shard_leases import shard_of
from tests.storage_backends import DatabaseFactory

TTL = 1_000


@pytest.fixture
def storage(tmp_path: Path, database_factory: DatabaseFactory) -> Iterator[Storage]:
    opened = open_storage(StorageSettings(database_factory(tmp_path).location, tmp_path / "v"))
    yield opened
    opened.close()


def test_a_lease_has_one_holder_until_it_expires(storage: Storage) -> None:
    leases = storage.shard_leases
    assert leases.claim(0, "worker-1", now_ns=100, ttl_ns=TTL)
    assert not leases.claim(0, "worker-2", now_ns=500, ttl_ns=TTL)  # held
    assert leases.claim(0, "worker-1", now_ns=900, ttl_ns=TTL)  # renewed, to 1900
    assert not leases.claim(0, "worker-2", now_ns=1_500, ttl_ns=TTL)
    assert leases.holders(1_899) == {0: "worker-1"}
    assert leases.claim(0, "worker-2", now_ns=1_900, ttl_ns=TTL)  # worker-1 stopped renewing
    assert not leases.claim(0, "worker-1", now_ns=1_950, ttl_ns=TTL)  # and cannot take it back
    leases.release(0, "worker-1")  # not its own: nothing happens
    assert leases.holders(2_000) == {0: "worker-2"}
    leases.release(0, "worker-2")
    assert leases.holders(2_000) == {}
    assert leases.claim(0, "worker-1", now_ns=2_000, ttl_ns=TTL)


def test_workers_racing_for_a_free_shard_get_one_holder(
    tmp_path: Path, database_factory: DatabaseFactory
) -> None:
    where = StorageSettings(database_factory(tmp_path).location, tmp_path / "v")
    open_storage(where).close()  # the schema first: the race under test is the claim's
    won: list[str] = []
    lost: list[str] = []

    def race(worker: str) -> None:
        own = open_storage(where)
        try:
            claimed = own.shard_leases.claim(7, worker, now_ns=10, ttl_ns=TTL)
            (won if claimed else lost).append(worker)
        finally:
            own.close()

    threads = [threading.Thread(target=race, args=(f"worker-{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(lost) == 5  # every worker had an answer, one a lease


def test_badges_split_into_shards_the_same_way_everywhere() -> None:
    assert shard_of("badge-a", 8) == shard_of("badge-a", 8)
    assert shard_of("amb-0001", 1) == 0
    spread = Counter(shard_of(f"amb-{n:04d}", 4) for n in range(2100))
    assert set(spread) == {0, 1, 2, 3} and min(spread.values()) > 400
    with pytest.raises(ValueError, match="at least one shard"):
        shard_of("badge-a", 0)
