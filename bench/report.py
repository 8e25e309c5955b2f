"""Turn per-round measurements into one table (text and markdown) and a JSON document."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from .probe import Ttfb

REFERENCE = "direct"  # ratios compare each system with this one, scenario by scenario


@dataclass
class Measurement:
    """One wrk run of one system in one scenario."""

    system: str
    scenario: str
    round: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_request: float | None
    rss_mib: float


@dataclass
class Row:
    system: str
    scenario: str
    rps: float | None
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_request: float | None
    rss_mib: float | None
    rps_vs_reference: float | None = None
    added_p50_ms: float | None = None


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(measurements: list[Measurement], ttfb: dict[str, Ttfb]) -> list[Row]:
    """Medians over rounds per (scenario, system), in first-seen order, then one TTFB row per system.

    A TTFB row reuses the p50/p99 columns for time to first byte; its +p50 is the added TTFB.
    """
    groups: dict[tuple[str, str], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.scenario, m.system), []).append(m)
    rows = [
        Row(
            system=system,
            scenario=scenario,
            rps=statistics.median(m.rps for m in runs),
            p50_ms=statistics.median(m.p50_ms for m in runs),
            p99_ms=statistics.median(m.p99_ms for m in runs),
            errors=sum(m.errors for m in runs),
            cpu_us_per_request=_median([m.cpu_us_per_request for m in runs]),
            rss_mib=runs[-1].rss_mib,
        )
        for (scenario, system), runs in groups.items()
    ]
    rows += [
        Row(system, "stream TTFB c=1", None, t.p50_ms, t.p99_ms, t.errors, None, None) for system, t in ttfb.items()
    ]
    reference = {row.scenario: row for row in rows if row.system == REFERENCE}
    for row in rows:
        ref = reference.get(row.scenario)
        if ref is None or row.system == REFERENCE:
            continue
        if row.rps is not None and ref.rps:
            row.rps_vs_reference = row.rps / ref.rps
        row.added_p50_ms = row.p50_ms - ref.p50_ms
    return rows


COLUMNS = (
    ("system", "system", "{}"),
    ("scenario", "scenario", "{}"),
    ("rps", "req/s", "{:,.0f}"),
    ("p50_ms", "p50 ms", "{:.2f}"),
    ("p99_ms", "p99 ms", "{:.2f}"),
    ("errors", "errors", "{}"),
    ("cpu_us_per_request", "CPU µs/req", "{:.0f}"),
    ("rss_mib", "RSS MiB", "{:.0f}"),
    ("rps_vs_reference", f"rps ×{REFERENCE}", "{:.2f}"),
    ("added_p50_ms", "+p50 ms", "{:+.2f}"),
)


def _cells(row: Row) -> list[str]:
    values = asdict(row)
    return ["—" if values[key] is None else fmt.format(values[key]) for key, _, fmt in COLUMNS]


def text_table(rows: list[Row]) -> str:
    header = [title for _, title, _ in COLUMNS]
    body = [_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)])


def markdown(rows: list[Row], meta: dict) -> str:
    header = [title for _, title, _ in COLUMNS]
    lines = [
        "# Bodhi Gateway benchmark",
        "",
        *(f"- {key}: {value}" for key, value in meta.items()),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(" --- " if i < 2 else " ---: " for i in range(len(header))) + "|",
        *("| " + " | ".join(_cells(row)) + " |" for row in rows),
        "",
    ]
    return "\n".join(lines)


def write(directory: Path, stem: str, rows: list[Row], measurements: list[Measurement], meta: dict) -> list[Path]:
    """Write STEM.json (meta, rows, every round) and STEM.md (meta and the table); return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    document = {"meta": meta, "rows": [asdict(r) for r in rows], "measurements": [asdict(m) for m in measurements]}
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    md_path.write_text(markdown(rows, meta))
    return [json_path, md_path]
