"""Smoke test of the benchmark harness (bench/): every piece that works without wrk.

`make bench` is the real run; this keeps the harness from rotting between runs: the fake upstream
must speak the OpenAI API well enough for the official client, the wrk output parser must read what
post.lua prints, the TTFB probe must measure, and started processes must be gone afterwards.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import httpx
import openai
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import probe, report, run, wrk  # noqa: E402

# Captured from `wrk -t1 -c32 -d2s -s bench/post.lua URL -- BODY` (wrk 4.1.0).
WRK_OUTPUT = """\
Running 2s test @ http://127.0.0.1:18101/v1/chat/completions
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   346.25us   93.50us   2.11ms   92.54%
    Req/Sec    92.59k     6.55k  107.14k    85.00%
  183598 requests in 2.00s, 65.31MB read
Requests/sec:  91703.12
Transfer/sec:     32.62MB
BENCH_RESULT {"requests":183598,"duration_us":2002091,"bytes":68482054,"p50_us":330,"p90_us":390,\
"p99_us":711,"max_us":2105,"errors":{"connect":0,"read":1,"write":0,"status":2,"timeout":3}}
"""


@pytest.fixture
def upstream(tmp_path):
    with contextlib.ExitStack() as stack:
        yield run.start_upstream(tmp_path, stack, chunks=3)


def client(port: int) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="x", http_client=httpx.Client(trust_env=False), max_retries=0
    )


def test_fake_upstream_answers_the_openai_client(upstream):
    messages = [{"role": "user", "content": "hi"}]
    with client(upstream.port) as oai:
        completion = oai.chat.completions.create(model="bench-model", messages=messages)
        with oai.chat.completions.create(model="bench-model", messages=messages, stream=True) as stream:
            chunks = list(stream)
        models = oai.models.list()
    assert completion.choices[0].message.content == "token0 token1 token2 "
    assert completion.usage.total_tokens == 8
    assert len(chunks) == 3
    assert "".join(c.choices[0].delta.content for c in chunks) == completion.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert [m.id for m in models.data] == ["fake-model"]


def test_correctness_check_passes_on_the_upstream(upstream):
    run.check(upstream, "bench-model")


async def test_ttfb_probe_measures_the_upstream(upstream):
    ttfb = await probe.measure_ttfb(upstream.port, "bench-model", requests=30, warmup=2)
    assert ttfb.requests == 30 and ttfb.errors == 0
    assert 0 < ttfb.p50_ms <= ttfb.p99_ms < 1000


def test_wrk_output_parser():
    result = wrk.parse(WRK_OUTPUT)
    assert result.requests == 183598
    assert result.p50_ms == pytest.approx(0.330)
    assert result.p99_ms == pytest.approx(0.711)
    assert result.errors == 6
    assert result.rps == pytest.approx(91703, rel=1e-3)
    with pytest.raises(wrk.WrkError):
        wrk.parse("Running 2s test @ http://127.0.0.1:1/\n")


def test_report_compares_with_direct():
    def m(system, rps, p50):
        return report.Measurement(system, "chat c=1", 0, 100, rps, p50, p50 * 2, 0, 50.0, 30.0)

    ttfb = {"direct": probe.Ttfb(10, 0, 0.05, 0.1), "bare": probe.Ttfb(10, 0, 0.30, 0.4)}
    rows = report.summarise([m("direct", 1000, 0.1), m("bare", 250, 0.4)], ttfb)
    bare = [r for r in rows if r.system == "bare"]
    assert bare[0].rps_vs_reference == pytest.approx(0.25)
    assert bare[0].added_p50_ms == pytest.approx(0.3)
    assert bare[1].scenario == "stream TTFB c=1" and bare[1].added_p50_ms == pytest.approx(0.25)
    assert "0.25" in report.text_table(rows)


def test_started_processes_are_stopped_by_pid(tmp_path):
    with contextlib.ExitStack() as stack:
        upstream = run.start_upstream(tmp_path, stack)
        pid = upstream.proc.pid
        assert Path(f"/proc/{pid}").exists()
    assert upstream.proc.exited()
    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
