"""Turn per-round measurements into the tables (text and markdown) and one JSON document.

Tables, in order: a summary per system (the issue's shape), the gateway's targets with a verdict
each, ratios versus each peer, streaming and memory checks, then every scenario in full.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .probe import Ttfb
from .streams import Gaps, Soak

REFERENCE = "direct"  # added latency and rps ×direct compare each system with this one
GATEWAY, PROD, TWO_WORKERS = "gateway", "gateway-prod", "gateway-2w"
PROD_NOLOG = "gateway-prod-nolog"
# The same plain config on each engine: GATEWAY runs the default one (uvicorn).
ENGINES = {GATEWAY: "uvicorn (default)", "gateway-hypercorn": "hypercorn", "gateway-granian": "granian"}
PEERS = ("portkey", "litellm")
TTFB_SCENARIO = "stream TTFB c=1"


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
    rss_mib: float  # the whole process group, after the run
    rss_worker_mib: float | None = None  # its largest process


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
    rss_worker_mib: float | None = None
    rps_vs_reference: float | None = None
    added_p50_ms: float | None = None


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(measurements: list[Measurement], ttfb: Mapping[str, Ttfb]) -> list[Row]:
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
            rss_worker_mib=runs[-1].rss_worker_mib,
        )
        for (scenario, system), runs in groups.items()
    ]
    rows += [Row(system, TTFB_SCENARIO, None, t.p50_ms, t.p99_ms, t.errors, None, None) for system, t in ttfb.items()]
    reference = {row.scenario: row for row in rows if row.system == REFERENCE}
    for row in rows:
        ref = reference.get(row.scenario)
        if ref is None or row.system == REFERENCE:
            continue
        if row.rps is not None and ref.rps:
            row.rps_vs_reference = row.rps / ref.rps
        row.added_p50_ms = row.p50_ms - ref.p50_ms
    return rows


# -- derived tables -------------------------------------------------------------------------------


class _Index:
    """Rows by (system, scenario), and the per-system figures the tables share."""

    def __init__(self, rows: list[Row], measurements: list[Measurement]):
        self.rows = {(r.system, r.scenario): r for r in rows}
        self.systems = list(dict.fromkeys(r.system for r in rows))
        self.rss_worker_max: dict[str, float] = {}
        for m in measurements:
            if m.rss_worker_mib is not None:
                self.rss_worker_max[m.system] = max(self.rss_worker_max.get(m.system, 0.0), m.rss_worker_mib)
        self.errors: dict[str, int] = {}
        for m in measurements:
            self.errors[m.system] = self.errors.get(m.system, 0) + m.errors

    def get(self, system: str, scenario: str, attr: str) -> float | None:
        row = self.rows.get((system, scenario))
        return None if row is None else getattr(row, attr)

    def ratio(self, system: str, other: str, scenario: str, attr: str) -> float | None:
        mine, theirs = self.get(system, scenario, attr), self.get(other, scenario, attr)
        return mine / theirs if mine is not None and theirs else None


def _summary(ix: _Index, gaps: Mapping[str, Gaps], soaks: Mapping[str, Soak]) -> list[dict]:
    out = []
    for system in ix.systems:
        gap, soak = gaps.get(system), soaks.get(system)
        out.append({
            "system": system,
            "rps_c32": ix.get(system, "chat c=32", "rps"),
            "rps_c128": ix.get(system, "chat c=128", "rps"),
            "added_p50_c1_ms": ix.get(system, "chat c=1", "added_p50_ms"),
            "cpu_us_c32": ix.get(system, "chat c=32", "cpu_us_per_request"),
            "rss_worker_mib": ix.rss_worker_max.get(system),
            "added_ttfb_ms": ix.get(system, TTFB_SCENARIO, "added_p50_ms"),
            "gap_p50_ms": gap.p50_ms if gap else None,
            "gap_min_ms": gap.min_ms if gap else None,
            "gaps_ok": gap.ok if gap else None,
            "soak_ok": f"{soak.ok}/{soak.streams}" if soak else None,
            "soak_growth_mib": soak.growth_mib if soak else None,
            "errors": ix.errors.get(system, 0),
        })
    return out


def _versus_peers(ix: _Index) -> list[dict]:
    present = [p for p in PEERS if any(s == p for s in ix.systems)]
    if not present:
        return []
    out = []
    for system in ix.systems:
        if system in PEERS or system == REFERENCE:
            continue
        row: dict[str, Any] = {"system": system}
        for scenario in ("chat c=32", "chat c=128"):
            for peer in present:
                row[f"req/s {scenario.removeprefix('chat ')} ×{peer}"] = ix.ratio(system, peer, scenario, "rps")
        if "portkey" in present:
            row["+p50 c=1 ×portkey"] = ix.ratio(system, "portkey", "chat c=1", "added_p50_ms")
            row["CPU/req c=32 ×portkey"] = ix.ratio(system, "portkey", "chat c=32", "cpu_us_per_request")
        theirs = ", ".join(f"{p} {_fmt(ix.get(p, TTFB_SCENARIO, 'added_p50_ms'), '{:+.1f}')}" for p in present)
        row[f"+TTFB ms ({theirs})"] = ix.get(system, TTFB_SCENARIO, "added_p50_ms")
        out.append(row)
    return out


def _engines(ix: _Index) -> list[dict]:
    """The same config on each engine, and each against hypercorn (the previous default) in the
    same run: CPU per request holds up on a busy machine, where requests/s do not."""
    present = [s for s in ENGINES if s in ix.systems]
    if len(present) < 2:
        return []
    out = []
    for system in present:
        row: dict[str, Any] = {"system": system, "engine": ENGINES[system]}
        for scenario in ("chat c=32", "chat c=128", "stream c=32"):
            row[f"req/s {scenario}"] = ix.get(system, scenario, "rps")
        row["CPU µs/req c=32"] = ix.get(system, "chat c=32", "cpu_us_per_request")
        row["CPU µs/req c=128"] = ix.get(system, "chat c=128", "cpu_us_per_request")
        row["+p50 c=1 ms"] = ix.get(system, "chat c=1", "added_p50_ms")
        row["req/s c=32 ×hypercorn"] = ix.ratio(system, "gateway-hypercorn", "chat c=32", "rps")
        row["CPU/req c=32 ×hypercorn"] = ix.ratio(system, "gateway-hypercorn", "chat c=32", "cpu_us_per_request")
        out.append(row)
    return out


ENGINE_FORMATS = {"system": "{}", "engine": "{}", "+p50 c=1 ms": "{:+.3f}"}


def _engine_columns(records: list[dict]) -> tuple:
    keys = list(dict.fromkeys(k for r in records for k in r))
    return tuple((k, k, ENGINE_FORMATS.get(k, "{:.2f}" if "×" in k else "{:,.0f}")) for k in keys)


def _verdict(value: float | None, ok: Callable[[float], bool]) -> str:
    if value is None:
        return "n/a"
    return "pass" if ok(value) else "FAIL"


def _targets(ix: _Index, gaps: Mapping[str, Gaps], soaks: Mapping[str, Soak]) -> list[dict]:
    """The issue's targets, each with what was measured and a verdict (n/a: not measured)."""
    out = []

    def add(target: str, system: str, value: float | None, shown: str, ok: Callable[[float], bool]) -> None:
        out.append({"target": target, "system": system, "measured": shown if value is not None else "not measured",
                    "value": value, "verdict": _verdict(value, ok)})

    engines = [GATEWAY] + [s for s in ENGINES if s != GATEWAY and s in ix.systems]  # default first
    for system in engines:
        for scenario in ("chat c=32", "chat c=128"):
            for peer, floor in (("portkey", 2.5), ("litellm", 20.0)):
                r = ix.ratio(system, peer, scenario, "rps")
                add(f"req/s {scenario.removeprefix('chat ')} ≥ {floor:g}× {peer}", system, r,
                    f"{_fmt(r, '{:.2f}')}×", lambda v, f=floor: v >= f)
        if system in ix.systems:
            add("zero errors (every scenario)", system, ix.errors.get(system, 0),
                str(ix.errors.get(system, 0)), lambda v: v == 0)
        r = ix.ratio(system, "portkey", "chat c=1", "added_p50_ms")
        add("added p50 at 1 connection ≤ 0.6× portkey's", system, r,
            f"{_fmt(r, '{:.2f}')}× ({_fmt(ix.get(system, 'chat c=1', 'added_p50_ms'), '{:+.3f}')} ms vs "
            f"{_fmt(ix.get('portkey', 'chat c=1', 'added_p50_ms'), '{:+.3f}')} ms)", lambda v: v <= 0.6)
        r = ix.ratio(system, "portkey", "chat c=32", "cpu_us_per_request")
        add("CPU per request ≤ 40% of portkey's", system, r,
            f"{_fmt(r, '{:.0%}')} ({_fmt(ix.get(system, 'chat c=32', 'cpu_us_per_request'), '{:.0f}')} µs vs "
            f"{_fmt(ix.get('portkey', 'chat c=32', 'cpu_us_per_request'), '{:.0f}')} µs)", lambda v: v <= 0.40)
    for system in (GATEWAY, PROD):
        v = ix.get(system, TTFB_SCENARIO, "added_p50_ms")
        if v is not None or system == GATEWAY:
            add("added TTFB p50 ≤ 1 ms", system, v, f"{_fmt(v, '{:+.3f}')} ms", lambda x: x <= 1.0)
    for system in (GATEWAY, PROD):
        gap = gaps.get(system)
        if gap is not None or system == GATEWAY:
            add(f"chunks forwarded as they arrive ({gap.delay_ms:g} ms apart)" if gap else "chunks forwarded as they arrive",
                system, None if gap is None else float(gap.ok),
                f"gaps p50 {_fmt(gap.p50_ms, '{:.1f}')} ms, min {_fmt(gap.min_ms, '{:.1f}')} ms" if gap else "",
                lambda v: v == 1.0)
    for system in (GATEWAY, PROD, TWO_WORKERS):
        v = ix.rss_worker_max.get(system)
        if v is not None or system == GATEWAY:
            add("RSS per worker after the load ≤ 120 MiB", system, v, f"{_fmt(v, '{:.0f}')} MiB", lambda x: x <= 120)
    for system in (GATEWAY, PROD, TWO_WORKERS):
        soak = soaks.get(system)
        if soak is None and system != GATEWAY:
            continue
        if soak is None:
            add("slow streams: no errors, RSS growth < 250 MiB", system, None, "", lambda v: True)
            continue
        failed = soak.streams - soak.ok
        add(f"{soak.streams:,} slow streams: no errors, RSS growth < 250 MiB", system, soak.growth_mib,
            f"{soak.ok}/{soak.streams} ok, RSS {soak.rss_before_mib:.0f} → {soak.rss_peak_mib:.0f} MiB "
            f"(+{soak.growth_mib:.0f})", lambda v, failed=failed: failed == 0 and v < 250)
    for scenario in ("chat c=32", "chat c=128"):
        r = ix.ratio(PROD, GATEWAY, scenario, "rps")
        add(f"production-shaped config ≥ 0.70× the plain config's req/s ({scenario.removeprefix('chat ')})",
            PROD, r, f"{_fmt(r, '{:.2f}')}×", lambda v: v >= 0.70)
    for system in (PROD, PROD_NOLOG):  # issue 14: keys, limits, both first-party plugins
        for scenario in ("chat c=32", "chat c=128"):
            r = ix.ratio(system, GATEWAY, scenario, "rps")
            if r is not None or system == PROD:
                add(f"production-shaped config ≥ 0.85× the plain config's req/s ({scenario.removeprefix('chat ')})",
                    system, r, f"{_fmt(r, '{:.2f}')}×", lambda v: v >= 0.85)
    for scenario in ("chat c=32", "chat c=128"):
        r = ix.ratio(TWO_WORKERS, GATEWAY, scenario, "rps")
        if r is not None:
            out.append({"target": f"--workers 2 on 2 cores: req/s vs 1 worker ({scenario.removeprefix('chat ')})",
                        "system": TWO_WORKERS, "measured": f"{r:.2f}×", "value": r, "verdict": "report"})
    return out


def build(
    meta: dict, measurements: list[Measurement], ttfb: Mapping[str, Ttfb], gaps: Mapping[str, Gaps],
    soaks: Mapping[str, Soak], notes: list[str],
) -> dict:
    rows = summarise(measurements, ttfb)
    ix = _Index(rows, measurements)
    return {
        "meta": meta,
        "notes": notes,
        "summary": _summary(ix, gaps, soaks),
        "targets": _targets(ix, gaps, soaks),
        "engines": _engines(ix),
        "versus_peers": _versus_peers(ix),
        "gaps": {system: g.summary() for system, g in gaps.items()},
        "soak": {system: s.summary() for system, s in soaks.items()},
        "rows": [asdict(r) for r in rows],
        "measurements": [asdict(m) for m in measurements],
    }


# -- formatting -----------------------------------------------------------------------------------


def _fmt(value: Any, fmt: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float) and value != value:
        return "—"
    return fmt.format(value)


ROW_COLUMNS = (
    ("system", "system", "{}"),
    ("scenario", "scenario", "{}"),
    ("rps", "req/s", "{:,.0f}"),
    ("p50_ms", "p50 ms", "{:.2f}"),
    ("p99_ms", "p99 ms", "{:.2f}"),
    ("errors", "errors", "{}"),
    ("cpu_us_per_request", "CPU µs/req", "{:.0f}"),
    ("rss_mib", "RSS MiB", "{:.0f}"),
    ("rss_worker_mib", "RSS/proc MiB", "{:.0f}"),
    ("rps_vs_reference", f"rps ×{REFERENCE}", "{:.2f}"),
    ("added_p50_ms", "+p50 ms", "{:+.2f}"),
)
SUMMARY_COLUMNS = (
    ("system", "system", "{}"),
    ("rps_c32", "req/s c=32", "{:,.0f}"),
    ("rps_c128", "req/s c=128", "{:,.0f}"),
    ("added_p50_c1_ms", "+p50 c=1 ms", "{:+.3f}"),
    ("cpu_us_c32", "CPU µs/req", "{:.0f}"),
    ("rss_worker_mib", "RSS/worker MiB", "{:.0f}"),
    ("added_ttfb_ms", "+TTFB p50 ms", "{:+.3f}"),
    ("gap_p50_ms", "50 ms gaps p50", "{:.1f}"),
    ("gap_min_ms", "gaps min", "{:.1f}"),
    ("soak_ok", "slow streams ok", "{}"),
    ("soak_growth_mib", "soak RSS +MiB", "{:.0f}"),
    ("errors", "errors", "{}"),
)
TARGET_COLUMNS = (
    ("target", "target", "{}"), ("system", "system", "{}"), ("measured", "measured", "{}"), ("verdict", "verdict", "{}"),
)


def _table(records: list[dict], columns: tuple, markdown: bool, text_columns: int = 1) -> list[str]:
    header = [title for _, title, _ in columns]
    body = [[_fmt(record.get(key), fmt) for key, _, fmt in columns] for record in records]
    if markdown:
        align = ["---" if i < text_columns else "---:" for i in range(len(header))]
        return ["| " + " | ".join(line) + " |" for line in (header, align, *body)]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < text_columns else c.rjust(w)
                         for i, (c, w) in enumerate(zip(line, widths))).rstrip()

    return [fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)]


def _peer_columns(records: list[dict]) -> tuple:
    keys = list(dict.fromkeys(k for r in records for k in r))
    return tuple((k, k, "{}" if k == "system" else ("{:+.3f}" if k.startswith("+TTFB") else "{:.2f}")) for k in keys)


def _stream_records(document: dict) -> list[dict]:
    out = []
    for system in dict.fromkeys([*document["gaps"], *document["soak"]]):
        gap, soak = document["gaps"].get(system) or {}, document["soak"].get(system) or {}
        out.append({
            "system": system,
            "gaps": _fmt(gap.get("p50_ms"), "{:.1f}") + " / " + _fmt(gap.get("min_ms"), "{:.1f}") + " / "
            + _fmt(gap.get("max_ms"), "{:.1f}") if gap else None,
            "gaps_ok": gap.get("ok") if gap else None,
            "soak_ok": f"{soak['ok']}/{soak['streams']}" if soak else None,
            "soak_errors": ", ".join(f"{k} {v}" for k, v in soak["errors"].items()) or "0" if soak else None,
            "soak_duration": _fmt(soak.get("duration_p50_s"), "{:.1f}") + " / " + _fmt(soak.get("duration_max_s"), "{:.1f}")
            if soak else None,
            "rss": f"{soak['rss_before_mib']:.0f} → {soak['rss_peak_mib']:.0f} → {soak['rss_after_mib']:.0f}" if soak else None,
            "growth": soak.get("growth_mib") if soak else None,
            "worker_peak": soak.get("rss_worker_peak_mib") if soak else None,
            "cpu": soak.get("cpu_s") if soak else None,
        })
    return out


STREAM_COLUMNS = (
    ("system", "system", "{}"),
    ("gaps", "gaps p50/min/max ms", "{}"),
    ("gaps_ok", "as they arrive", "{}"),
    ("soak_ok", "slow streams ok", "{}"),
    ("soak_errors", "errors", "{}"),
    ("soak_duration", "stream s p50/max", "{}"),
    ("rss", "RSS MiB before → peak → after", "{}"),
    ("growth", "growth MiB", "{:.0f}"),
    ("worker_peak", "peak/proc MiB", "{:.0f}"),
    ("cpu", "CPU s", "{:.1f}"),
)


def _sections(document: dict, markdown: bool) -> list[str]:
    def title(text: str) -> list[str]:
        return ["", f"## {text}", ""] if markdown else ["", text, ""]

    lines: list[str] = []
    lines += title("Summary (non-streaming chat; +p50 at 1 connection and +TTFB against direct)")
    lines += _table(document["summary"], SUMMARY_COLUMNS, markdown)
    lines += title("Targets (issue 8), measured in this run")
    lines += _table(document["targets"], TARGET_COLUMNS, markdown, text_columns=4)
    if document.get("engines"):
        lines += title("Engines (the plain config on each; ratios against hypercorn, same run)")
        lines += _table(document["engines"], _engine_columns(document["engines"]), markdown, text_columns=2)
    if document["versus_peers"]:
        lines += title("Versus peers (ratios: > 1 is more req/s, < 1 is less added latency or CPU)")
        lines += _table(document["versus_peers"], _peer_columns(document["versus_peers"]), markdown)
    if document["gaps"] or document["soak"]:
        lines += title("Streaming and memory (chunks 50 ms apart through each system; concurrent slow streams)")
        lines += _table(_stream_records(document), STREAM_COLUMNS, markdown, text_columns=2)
    lines += title("Every scenario (medians over rounds)")
    lines += _table(document["rows"], ROW_COLUMNS, markdown, text_columns=2)
    if document["notes"]:
        lines += title("Notes")
        lines += [f"- {note}" for note in document["notes"]]
    return lines


def text(document: dict) -> str:
    return "\n".join(_sections(document, markdown=False)).lstrip("\n")


def markdown(document: dict) -> str:
    lines = ["# Bodhi Gateway benchmark", "", *(f"- {key}: {value}" for key, value in document["meta"].items())]
    return "\n".join([*lines, *_sections(document, markdown=True), ""])


def text_table(rows: list[Row]) -> str:
    """The every-scenario table alone."""
    return "\n".join(_table([asdict(r) for r in rows], ROW_COLUMNS, markdown=False, text_columns=2))


def write(directory: Path, stem: str, document: dict) -> list[Path]:
    """Write STEM.json (everything, every round) and STEM.md (meta and the tables); return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    json_path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    md_path.write_text(markdown(document))
    return [json_path, md_path]
