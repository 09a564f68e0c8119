"""PURE. Which snapshots to keep: the last N, one per day, one per week (restic's rules)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from drd.snapshot.model import as_utc


@dataclass(frozen=True)
class Retention:
    """Which snapshot ids to keep, why, and which to delete."""

    keep: dict[str, tuple[str, ...]]  # id -> rules that keep it
    delete: tuple[str, ...]


def select_retention(
    snapshots: Iterable[tuple[str, dt.datetime]],
    *,
    keep_last: int = 0,
    keep_daily: int = 0,
    keep_weekly: int = 0,
) -> Retention:
    """
    Choose what to keep from ``(id, taken_at)`` pairs. Pure.

    ``keep_last`` keeps the newest N; ``keep_daily`` the newest of each of the N most
    recent UTC days that have a snapshot; ``keep_weekly`` the same per ISO week.
    The newest snapshot is always kept, and with every rule at 0 nothing is deleted.
    """
    ordered = sorted(snapshots, key=lambda s: (s[1], s[0]), reverse=True)
    if not ordered:
        return Retention(keep={}, delete=())
    if keep_last <= 0 and keep_daily <= 0 and keep_weekly <= 0:
        return Retention(keep={sid: ("no-policy",) for sid, _ in ordered}, delete=())
    reasons: dict[str, list[str]] = {}

    def keep(sid: str, why: str) -> None:
        reasons.setdefault(sid, []).append(why)

    for sid, _ in ordered[: max(keep_last, 0)]:
        keep(sid, "last")
    for rule, count, bucket in (
        ("daily", keep_daily, _day),
        ("weekly", keep_weekly, _week),
    ):
        seen: set[tuple[int, ...]] = set()
        for sid, when in ordered:
            if len(seen) >= count:
                break
            period = bucket(when)
            if period not in seen:
                seen.add(period)
                keep(sid, rule)
    keep(ordered[0][0], "newest")
    return Retention(
        keep={sid: tuple(dict.fromkeys(why)) for sid, why in reasons.items()},
        delete=tuple(sid for sid, _ in ordered if sid not in reasons),
    )


def _day(when: dt.datetime) -> tuple[int, ...]:
    utc = as_utc(when)
    return (utc.year, utc.month, utc.day)


def _week(when: dt.datetime) -> tuple[int, ...]:
    year, week, _ = as_utc(when).isocalendar()
    return (year, week)
