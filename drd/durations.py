"""Parse and format short durations: "90s", "5m", "1h30m", "2d", "250ms". Pure."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import Decimal

__all__ = ["MAX_SECONDS", "format_duration", "parse_duration"]

# A century: longer than any interval or retention drd schedules, far below timedelta's limit.
MAX_SECONDS = 100 * 366 * 86400

_MAX_TEXT = 64
_MICROS = {"d": 86_400_000_000, "h": 3_600_000_000, "m": 60_000_000, "s": 1_000_000}
_MICROS |= {"ms": 1000, "us": 1}
_ORDER = list(_MICROS)
_SHAPE = re.compile(r"(?:\d{1,12}(?:\.\d{1,9})?(?:ms|us|[dhms]))+")
_PART = re.compile(r"(\d{1,12}(?:\.\d{1,9})?)(ms|us|[dhms])")


def parse_duration(text: str) -> timedelta:
    """Parse "1h30m"-style text (units d, h, m, s, ms, us; largest first) or bare seconds."""
    value = text.strip()
    if len(value) > _MAX_TEXT:
        raise ValueError(f"duration text is longer than {_MAX_TEXT} characters")
    if value.isdigit():
        return seconds_to_timedelta(int(value))
    if not _SHAPE.fullmatch(value):
        raise ValueError('invalid duration: use e.g. "90s", "5m", "1h30m", "2d" or seconds')
    micros = Decimal(0)  # exact: "0.1s" is 100000us, not a float's approximation of it
    last = -1
    for number, unit in _PART.findall(value):
        rank = _ORDER.index(unit)
        if rank <= last:
            raise ValueError("invalid duration: units must appear once each, largest first")
        last = rank
        micros += Decimal(number) * _MICROS[unit]
    if micros > MAX_SECONDS * 1_000_000:
        raise ValueError(f"duration must be at most {MAX_SECONDS} seconds")
    return timedelta(microseconds=int(micros))


def seconds_to_timedelta(seconds: float) -> timedelta:
    """A timedelta of *seconds*, refusing NaN, infinities and more than a century."""
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise ValueError("duration must be a finite number")
    if abs(seconds) > MAX_SECONDS:
        raise ValueError(f"duration must be at most {MAX_SECONDS} seconds")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render like Go's time.Duration: "1h30m0s", "5m0s", "1.5s", "250ms", "0s"."""
    micros = value // timedelta(microseconds=1)
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    if micros == 0:
        return "0s"
    if micros < 1_000_000:
        if micros % 1000 == 0:
            return f"{sign}{micros // 1000}ms"
        return f"{sign}{micros}us"
    hours, rest = divmod(micros, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    text = f"{seconds}.{fraction:06d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text
