"""Durations and sizes as written in gateway.yaml (already checked by the schema), and how
durations and moments are printed back."""

from __future__ import annotations

import re
import time

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE = re.compile(r"^([0-9]+)(B|KB|MB|GB)$")
_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def seconds(value: int | float | str) -> float:
    """250ms -> 0.25, 30s -> 30, 5m -> 300, 1h -> 3600, 2 -> 2 (a number is seconds)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a duration (250ms, 30s, 5m, 1h, 1d or seconds)")
    number, unit = float(match.group(1)), match.group(2)
    # Divide for ms: 700ms is 0.7, where 700 * 0.001 would be 0.7000000000000001.
    return number / 1000 if unit == "ms" else number * _SECONDS[unit]


def duration_text(value: float) -> str:
    """Seconds as printed to people, to the millisecond: 0.49968 -> "0.5s", 30 -> "30s"."""
    rounded = round(value, 3)
    if value > 0 and rounded == 0:
        rounded = 0.001
    return f"{rounded:g}s"


def number_text(value: float) -> str:
    """An amount as people and integer parsers read it: 10000000.0 -> "10000000" (never
    "1e+07"), 0.05 -> "0.05", 2.5 -> "2.5"."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:f}".rstrip("0").rstrip(".") if abs(value) >= 1e-6 else repr(value)


def iso_utc(ts: float) -> str:
    """A unix time as ISO 8601 in UTC, as everywhere in the API: 2026-01-31T12:00:00Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def size_bytes(value: int | str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a size (512KB, 20MB, 1GB or bytes)")
    return int(match.group(1)) * _BYTES[match.group(2)]


def size_text(value: int) -> str:
    """Bytes as printed to people, in the config's units (powers of 1024): 10737418240 ->
    "10GB", 1536 -> "1.5KB", 12 -> "12B"."""
    for unit in ("GB", "MB", "KB"):
        if value >= _BYTES[unit]:
            return f"{round(value / _BYTES[unit], 1):g}{unit}"
    return f"{value}B"
