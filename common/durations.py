"""Recipe durations: `90`, `"90s"`, `"2m"`, `"1h30m"`, `"500ms"` -> float seconds.

One parser for every duration in a recipe (workload windows, SLOs, health-check timings), so
the schema check, the loader and the executor all agree on what a duration means.
"""
from __future__ import annotations

import re

from hpcbench.common.limits import MAX_DURATION_S, describe_duration_limit

UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
EXAMPLES = '90, "90s", "2m", "1h30m" or "500ms"'

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(value: object) -> float:
    """Return `value` in seconds; raise ValueError naming the value and the accepted forms.

    A bare number (or numeric string) is seconds. A string is one or more `<number><unit>`
    parts with units h, m, s, ms, largest first and each unit at most once ("1h30m", "2m15s").
    Every duration is finite, >= 0 and at most MAX_DURATION_S (30 days).
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; use {EXAMPLES}")
    if isinstance(value, (int, float)):
        if isinstance(value, int) and value > MAX_DURATION_S:   # 10**400 overflows float()
            raise ValueError(f"{_shown(value)} is too long a duration: {describe_duration_limit()}")
        return _non_negative(float(value), value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration; use {EXAMPLES}")
    text = value.strip().lower()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return _non_negative(number, value)
    position, total, seen = 0, 0.0, []
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        unit = match.group(2)
        if seen and (unit in seen or UNIT_SECONDS[unit] >= UNIT_SECONDS[seen[-1]]):
            raise ValueError(f"{value!r}: units must go from largest to smallest, each once; "
                             f"use {EXAMPLES}")
        seen.append(unit)
        total += float(match.group(1)) * UNIT_SECONDS[unit]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"{value!r} is not a duration; use {EXAMPLES}")
    return _non_negative(total, value)


def _non_negative(seconds: float, original: object) -> float:
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{_shown(original)} is not a duration: it must be a finite number of "
                         f"seconds >= 0; use {EXAMPLES}")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{_shown(original)} is too long a duration: {describe_duration_limit()}")
    return seconds


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
