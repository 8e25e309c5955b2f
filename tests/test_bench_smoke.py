"""Smoke test of the benchmark harness (bench/): every piece that works without wrk or a network.

`make bench` is the real run; this keeps the harness from rotting between runs: the fake upstream
must speak the OpenAI API well enough for the official client, the wrk output parser must read what
post.lua prints, the TTFB probe and the streaming checks must measure, the generated
production-shaped config must start and route, the report must judge the targets, and started
processes must be gone afterwards.
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

from bench import probe, report, run, streams, systems, wrk  # noqa: E402

from . import loopback  # noqa: E402

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


def test_wrk_command_sends_headers_after_an_empty_path():
    argv = wrk.command("http://127.0.0.1:1/v1/chat/completions", "{}", 32, 10, {"Authorization": "Bearer k"})
    assert argv[-4:] == ["--", "{}", "", "Authorization: Bearer k"]
    assert wrk.command("http://127.0.0.1:1/", "{}", 1, 1)[-2:] == ["--", "{}"]


async def test_chunks_are_timed_and_many_slow_streams_are_served(upstream):
    gaps = await streams.measure_gaps(upstream.port, "slow-20x4", 20, 4, streams=2)
    assert gaps.errors == [] and len(gaps.gaps_ms) == 6 and gaps.ok
    assert 15 < gaps.p50_ms < 40
    soak = await streams.soak(upstream.port, "slow-10x20", 20, upstream.proc.pid, streams=20, ramp_s=0.05, timeout_s=10)
    assert (soak.ok, dict(soak.errors), soak.peak_open) == (20, {}, 20)
    assert 0 < soak.rss_before_mib <= soak.rss_peak_mib


def test_production_shaped_gateway_starts_and_routes(tmp_path):
    """The generated gateway-prod config is valid for the gateway as it is now: the key and the
    metadata header get through auth, limits and plugins, and the condition picks the fallback."""
    with contextlib.ExitStack() as stack:
        up = run.start_upstream(tmp_path, stack)
        prod = run.start_system(systems.SYSTEMS["gateway-prod"], up, tmp_path, stack, None)
        run.check(prod, systems.MODEL)
        assert prod.headers["Authorization"] == f"Bearer {systems.PROD_KEY}"
        nolog = run.start_system(systems.SYSTEMS["gateway-prod-nolog"], up, tmp_path, stack, None)
        run.check(nolog, systems.MODEL)
    assert "request_log: false" in (tmp_path / "gateway-prod-nolog" / "gateway-prod-nolog.yaml").read_text()


def test_cache_system_answers_from_the_cache(tmp_path):
    """The generated gateway-cache config caches the load model (a repeat is a hit, the
    upstream asked once) and leaves the slow streaming routes uncached."""
    with contextlib.ExitStack() as stack:
        up = run.start_upstream(tmp_path, stack)
        cached = run.start_system(systems.SYSTEMS["gateway-cache"], up, tmp_path, stack, None)
        run.check(cached, systems.MODEL)  # a plain miss, then the same request streamed: a hit
        base = f"http://127.0.0.1:{cached.port}/v1/chat/completions"
        hit = loopback.post(base, content=probe.chat_body(systems.MODEL, False), timeout=10,
                         headers={"Content-Type": "application/json"})
        slow = loopback.post(base, content=probe.chat_body(systems.GAP_MODEL, False), timeout=10,
                          headers={"Content-Type": "application/json"})
    assert hit.headers["x-gateway-cache"] == "hit"
    assert slow.headers["x-gateway-cache"] == "skip"


def test_report_judges_the_targets_against_the_peers():
    def m(system, scenario, rps, p50, cpu):
        return report.Measurement(system, scenario, 0, 100, rps, p50, p50, 0, cpu, 60.0, 60.0)

    runs = [
        m(system, f"chat c={c}", rps, p50, cpu)
        for system, rps, p50, cpu in [("direct", 50000, 0.1, 10), ("gateway", 3000, 0.4, 300),
                                      ("gateway-prod", 2000, 0.5, 400), ("portkey", 1000, 1.1, 1000),
                                      ("litellm", 200, 10.1, 9000)]
        for c in (1, 32, 128)
    ]
    document = report.build({}, runs, {}, {}, {}, ["litellm: a note"])
    verdicts = {(t["target"], t["system"]): t["verdict"] for t in document["targets"]}
    assert verdicts[("req/s c=32 ≥ 2.5× portkey", "gateway")] == "pass"
    assert verdicts[("req/s c=32 ≥ 20× litellm", "gateway")] == "FAIL"
    assert verdicts[("added p50 at 1 connection ≤ 0.6× portkey's", "gateway")] == "pass"
    assert verdicts[("production-shaped config ≥ 0.70× the plain config's req/s (c=32)", "gateway-prod")] == "FAIL"
    assert verdicts[("production-shaped config ≥ 0.85× the plain config's req/s (c=32)", "gateway-prod")] == "FAIL"
    assert ("production-shaped config ≥ 0.85× the plain config's req/s (c=32)", "gateway-prod-nolog") not in verdicts
    assert verdicts[("added TTFB p50 ≤ 1 ms", "gateway")] == "n/a"
    gateway = next(r for r in document["versus_peers"] if r["system"] == "gateway")
    assert gateway["req/s c=128 ×portkey"] == pytest.approx(3.0)
    text = report.text(document)
    assert "Versus peers" in text and "litellm: a note" in text


def test_peers_are_optional(monkeypatch, tmp_path):
    monkeypatch.setattr(run.peers, "LITELLM_BIN", tmp_path / "missing" / "litellm")
    assert "make bench-peers" in run.peers.litellm_missing()
    args = run.parse_args(["--systems", "bare,gateway"])
    assert [s.name for s in args.systems] == ["bare-aiohttp", "gateway"]
    assert {"litellm", "portkey"} <= {s.name for s in run.parse_args(["--peers"]).systems}


def test_dechunk():
    assert streams.dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n") == b"abcde"
    assert streams.dechunk(b"3\r\nabc\r\n") is None


def test_embed_batch_bench_runs():
    """bench/embed_batch.py (run by `make bench`) measures both routes and prints the ratio;
    batching cuts the upstream calls."""
    import subprocess

    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "embed_batch.py"), "--requests", "40",
         "--concurrency", "16", "--call-ms", "5", "--upstream-slots", "2"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.startswith(("plain ", "batched "))}
    assert int(rows["plain"][1]) == 40 and int(rows["batched"][1]) < 20
    assert "throughput ratio batched/plain:" in out
