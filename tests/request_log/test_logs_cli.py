"""`gateway logs`: the request log read from its file (the config's data directory, or
observability.request_log.path), as a table or JSON lines, filtered; --follow prints new rows
until Ctrl-C."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from gateway.builtin import request_log_cli
from gateway.cli import build_parser
from gateway.request_record import AttemptRecord
from gateway.store import logs_db
from gateway.store.logs_writer import row

from ..cli_runner import run_cli
from .test_writer import record

CONFIG = """
version: 1
server: {{data_dir: {data_dir}}}
providers:
  demo: {{type: mock}}
routes:
  live: {{target: {{provider: demo, model: m}}}}
{extra}
"""


def write_rows(path: Path, now: float) -> None:
    base = record(now - 30, "req-ok")
    conn = logs_db.connect(str(path))
    logs_db.insert(conn, [
        row(dataclasses.replace(base, request_id="req-old", time=now - 7200), None),
        row(base, None),
        row(dataclasses.replace(
            base, request_id="req-fail", route="other", status=502, target="up/x",
            error="upstream said 502: bad gateway", tokens_in=None, tokens_out=None,
            cost_usd=None, attempts=(AttemptRecord("up/x", 502, 12.5, "server"),)), None),
        row(dataclasses.replace(base, request_id="req-429", status=429, key="alice"), None),
    ])
    conn.close()


def test_table_filters_and_json(tmp_path: Path):
    """Rows oldest first with their status, route, target, tokens and cost; --status,
    --route, --since and --limit select; --json prints one object per line."""
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG.format(data_dir="state", extra=""))
    write_rows(tmp_path / "state" / "logs.db", time.time())
    result = run_cli("logs", "--config", config)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split()[:4] == ["TIME", "STATUS", "ROUTE", "TARGET"]
    ids = [line.split()[-1] for line in lines[1:] if not line.startswith("    ")]
    assert ids == ["req-old", "req-ok", "req-fail", "req-429"]
    failed = next(i for i, line in enumerate(lines) if line.endswith("req-fail"))
    assert lines[failed].split()[1:4] == ["502", "other", "up/x"]
    assert lines[failed + 1].strip() == "upstream said 502: bad gateway"
    ok = next(line for line in lines if line.endswith("req-ok")).split()
    assert ok[1:7] == ["200", "live", "demo/m", "-", "1.0", "1/1"]

    def ids_of(*args: object) -> list[str]:
        out = run_cli("logs", "--config", config, "--json", *args)
        assert out.code == 0, out.err
        return [json.loads(line)["request_id"] for line in out.out.splitlines()]

    assert ids_of("--status", "5xx") == ["req-fail"]
    assert ids_of("--status", "4xx") == ["req-429"]
    assert ids_of("--status", "200") == ["req-old", "req-ok"]
    assert ids_of("--route", "other") == ["req-fail"]
    assert ids_of("--since", "1h") == ["req-ok", "req-fail", "req-429"]
    assert ids_of("--limit", "2") == ["req-fail", "req-429"]
    line = json.loads(run_cli("logs", "--config", config, "--json", "--status", "502").out)
    assert line["attempts"] == [{"target": "up/x", "status": 502, "latency_ms": 12.5,
                                 "error_class": "server"}]
    bad = run_cli("logs", "--config", config, "--status", "bad")
    assert bad.code == 2 and "--status" in bad.err and "5xx, 4xx" in bad.err


def test_path_from_the_config_and_no_log_yet(tmp_path: Path):
    """observability.request_log.path is where the command reads; no file: exit 1, saying
    where it looked."""
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG.format(data_dir="state",
                                    extra="observability: {request_log: {path: audit/reqs.db}}"))
    missing = run_cli("logs", "--config", config)
    assert missing.code == 1 and str(tmp_path / "state" / "audit" / "reqs.db") in missing.err
    write_rows(tmp_path / "state" / "audit" / "reqs.db", time.time())
    assert run_cli("logs", "--config", config, "--status", "502").out.splitlines()[1].endswith(
        "req-fail")


def test_follow_prints_new_rows_until_ctrl_c(tmp_path: Path, capsys):
    """--follow shows the last rows, then each new one as it is written; Ctrl-C ends it
    with status 0."""
    config = tmp_path / "gateway.yaml"
    config.write_text(CONFIG.format(data_dir="state", extra=""))
    path = tmp_path / "state" / "logs.db"
    now = time.time()
    write_rows(path, now)
    polls = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:
            conn = logs_db.connect(str(path))
            logs_db.insert(conn, [row(record(now, "req-new"), None),
                                  row(dataclasses.replace(record(now, "req-other"),
                                                          route="other"), None)])
            conn.close()
        elif len(polls) == 3:
            raise KeyboardInterrupt

    args = build_parser().parse_args(["logs", "--config", str(config), "--follow", "--json",
                                      "--route", "live", "--limit", "1"])
    assert request_log_cli.run(args, sleep=sleep) == 0
    shown = [json.loads(line)["request_id"] for line in capsys.readouterr().out.splitlines()]
    assert shown == ["req-429", "req-new"] and polls == [request_log_cli.POLL_EVERY] * 3
