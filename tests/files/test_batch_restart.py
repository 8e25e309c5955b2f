"""A real `gateway serve` killed (SIGKILL) in the middle of a batch and started again on the
same data directory finishes it: every line answered exactly once in the output, and no line
whose answer was recorded before the kill sent upstream again (counted at a fake upstream).
The kill comes while `concurrency` lines are in flight (sent, held by the upstream): exactly
those are sent again, and each of them is still once in the output."""

from __future__ import annotations

import collections
import json
import signal
import time

from ..fake_upstream import Behaviour
from ..inprocess_gateway import poll
from .test_files_api import batch_line, jsonl

LINES, CONCURRENCY = 200, 4
ANSWERED = 50  # lines answered before the kill; the next CONCURRENCY hang upstream
CONFIG = """
version: 1
server: {{data_dir: "{data}"}}
providers:
  up: {{type: openai, base_url: "{upstream}", api_key: test-key}}
routes:
  chat: {{target: {{provider: up, model: gpt-test}}}}
batches: {{concurrency: {concurrency}, max_attempts: 1}}
defaults: {{retry: {{attempts: 1}}}}
"""


def counts(gw, batch_id) -> dict:
    return gw.get(f"/v1/batches/{batch_id}").json()


def test_killed_mid_batch_resumes_exactly_once(gateway_factory, upstream, tmp_path):
    upstream.script("gpt-test", *[Behaviour(delay=0.01) for _ in range(ANSWERED)],
                    *[Behaviour(delay=60) for _ in range(CONCURRENCY)],  # in flight at the kill
                    *[Behaviour(delay=0.01) for _ in range(LINES)])
    config = CONFIG.format(data=tmp_path / "data", upstream=upstream.base_url,
                           concurrency=CONCURRENCY)
    first = gateway_factory(config)
    made = first.post("/v1/files", data={"purpose": "batch"},
                      files={"file": ("in.jsonl", jsonl(batch_line(i) for i in range(LINES)))})
    assert made.status_code == 200, made.text
    batch = first.post("/v1/batches", json={"input_file_id": made.json()["id"],
                                            "endpoint": "/v1/chat/completions",
                                            "completion_window": "24h"}).json()
    poll(lambda: (counts(first, batch["id"])["request_counts"]["completed"],
                  len(upstream.requests)),
         lambda seen: seen == (ANSWERED, ANSWERED + CONCURRENCY), 20,
         "the batch did not reach the hanging lines", every=0.01)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(5)
    in_flight = {r.body["messages"][0]["content"] for r in upstream.requests[ANSWERED:]}

    second = gateway_factory(config)
    started = time.monotonic()
    done = poll(lambda: counts(second, batch["id"]), lambda b: b["status"] == "completed", 30,
                "the batch did not finish after the restart", every=0.05)
    assert done["request_counts"] == {"total": LINES, "completed": LINES, "failed": 0}
    output = second.get(f"/v1/files/{done['output_file_id']}/content").text.splitlines()
    ids = collections.Counter(json.loads(line)["custom_id"] for line in output)
    assert ids == collections.Counter(f"req-{i}" for i in range(LINES))  # each exactly once
    calls = collections.Counter(r.body["messages"][0]["content"] for r in upstream.requests)
    again = {prompt for prompt, n in calls.items() if n > 1}
    # Exactly the lines in flight at the kill (sent, answer not recorded) were sent twice.
    assert again == in_flight and len(again) == CONCURRENCY
    assert len(upstream.requests) == LINES + CONCURRENCY
    print(f"\nkilled with {ANSWERED} answered and {CONCURRENCY} in flight; resumed in "
          f"{time.monotonic() - started:.1f}s")
