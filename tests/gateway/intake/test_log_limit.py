"""The bound on refusal log lines: a few per badge per window, then a count of the rest."""

from __future__ import annotations

from gateway.intake.log_limit import LogLimit


def test_a_flooding_badge_gets_a_few_lines_per_window_and_a_count() -> None:
    now = [0]
    limit = LogLimit(3, 100, clock=lambda: now[0])
    assert [limit.allow("badge-a") for _ in range(5)] == [(True, 0)] * 3 + [(False, 0)] * 2
    assert limit.allow("badge-b") == (True, 0)  # another badge has its own lines
    now[0] = 100
    assert limit.allow("badge-a") == (True, 2)  # the next window says what was not logged
    assert limit.allow("badge-a") == (True, 0)
