"""/metrics under `gateway serve --workers 2`: one scrape counts every worker's requests."""

from __future__ import annotations

import re
import time

from .. import loopback

CONFIG = """
version: 1
providers:
  demo: {type: mock}
routes:
  live: {target: {provider: demo, model: m}}
"""
REQUESTS = 30


def scrape(gw) -> tuple[float, str]:
    """(gateway_requests_total for route live, the worker that answered) over a new connection."""
    text = loopback.get(gw.base_url + "/metrics", timeout=5).text
    total = sum(float(v) for v in re.findall(
        r'^gateway_requests_total\{key="",route="live",status="200",target="demo/m"\} (\S+)$', text, re.M))
    worker = re.search(r'^gateway_config_version\{worker="(\d+)"\}', text, re.M)
    assert worker, text
    return total, worker.group(1)


def test_one_scrape_counts_every_workers_requests(gateway_factory):
    """Requests spread over two workers (each on a new connection); every scrape, whichever
    worker answers it, reports all of them, and the count never goes back."""
    gw = gateway_factory(CONFIG, args=("--workers", "2"))
    totals, workers = [], set()
    for _ in range(REQUESTS):
        reply = loopback.post(gw.base_url + "/v1/chat/completions", timeout=10, json={
            "model": "live", "messages": [{"role": "user", "content": "x"}]})
        assert reply.status_code == 200
        total, worker = scrape(gw)
        totals.append(total)
        workers.add(worker)
    deadline = time.monotonic() + 10
    while workers != {"0", "1"} and time.monotonic() < deadline:
        total, worker = scrape(gw)
        totals.append(total)
        workers.add(worker)
    assert workers == {"0", "1"}, "the scrapes never reached both workers"
    assert totals[:REQUESTS] == list(range(1, REQUESTS + 1))
    assert set(totals[REQUESTS:]) <= {REQUESTS}
    text = loopback.get(gw.base_url + "/metrics", timeout=5).text
    for line in ('gateway_request_duration_seconds_count{route="live",target="demo/m"}',
                 'gateway_time_to_first_byte_seconds_count{route="live",target="demo/m"}'):
        assert f"{line} {float(REQUESTS)}" in text, text
