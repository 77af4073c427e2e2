"""Relative times on the account pages ("3 days ago", "in 30 days"): rounded, never cut down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from corral.auth.security_views import ago

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        # A 30-day token seen right after it was made (issue 10: it read "in 29 days").
        (timedelta(days=30) - timedelta(seconds=5), "in 30 days"),
        (timedelta(days=30), "in 30 days"),
        (timedelta(days=7) - timedelta(minutes=1), "in 7 days"),
        (timedelta(days=1, hours=11, minutes=59), "in 1 day"),
        (timedelta(days=1, hours=12), "in 2 days"),
        (timedelta(days=2, hours=12), "in 3 days"),  # half up, not to the even number
        (timedelta(hours=23, minutes=31), "in 1 day"),  # never "in 24 hours"
        (timedelta(hours=23, minutes=29), "in 23 hours"),
        (timedelta(minutes=59, seconds=31), "in 1 hour"),  # never "in 60 minutes"
        (timedelta(minutes=59, seconds=29), "in 59 minutes"),
        (timedelta(seconds=90), "in 2 minutes"),
        (timedelta(seconds=89), "in 1 minute"),
        (timedelta(seconds=30), "in 1 minute"),
        (timedelta(seconds=29), "in under a minute"),
        (timedelta(0), "just now"),
        (-timedelta(seconds=29), "just now"),
        (-timedelta(seconds=30), "1 minute ago"),
        (-timedelta(hours=1, minutes=29), "1 hour ago"),
        (-timedelta(hours=1, minutes=30), "2 hours ago"),
        (-timedelta(days=3) + timedelta(seconds=1), "3 days ago"),
        (-timedelta(days=400), "400 days ago"),
    ],
)
def test_relative_times_round_to_the_nearest_unit(offset: timedelta, expected: str) -> None:
    assert ago(NOW + offset, NOW) == expected


def test_no_time_reads_never() -> None:
    assert ago(None, NOW) == "Never"
