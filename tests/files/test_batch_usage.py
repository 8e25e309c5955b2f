"""UsageTap (gateway/files/batch_usage.py) reads a batch's output and error files line by
line: each line's route, target, usage and cost, totals per (route, target) for the lines
that succeeded, and one RequestRecord per line (not for the lines an earlier pass handed)."""

from __future__ import annotations

import json

from gateway.files.batch_usage import UsageTap, line_request_id, line_result


class HalfPrice:
    def batch_cost(self, target, usage):
        return (usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)) * 0.5


def output_line(custom_id: str, prompt: int, completion: int) -> dict:
    return {"id": "r", "custom_id": custom_id, "error": None, "response": {
        "status_code": 200, "request_id": "x", "body": {"object": "chat.completion", "usage": {
            "prompt_tokens": prompt, "completion_tokens": completion}}}}


async def test_lines_are_read_once_each():
    records = []
    routes = {"a": "oa/m1", "b": "oa/m2"}

    async def route_of():
        return {"x1": "a", "x2": "b", "x3": "a"}

    tap = UsageTap("batch_1", "chat", "alice", routes, route_of, HalfPrice(),
                   [("log", records.append)], 7)
    await tap.start()
    lines = [output_line("x1", 10, 5), output_line("x2", 3, 1),
             {"id": "r", "custom_id": "x4", "response": None,
              "error": {"code": "batch_expired", "message": "too late"}},
             output_line("x3", 2, 2)]
    data = [json.dumps(x).encode() for x in lines] + [b"", b"not json",
                                                      json.dumps(output_line("x1", 1, 1)).encode()]
    for raw in data:
        tap.line(raw)
    got = {k: (t.requests, t.prompt_tokens, t.completion_tokens, t.usd)
           for k, t in tap.totals.items()}
    assert got == {("a", "oa/m1"): (3, 13, 8, 10.5), ("b", "oa/m2"): (1, 3, 1, 2.0)}
    assert [r.request_id for r in records] == [
        "batch_1-x1", "batch_1-x2", "batch_1-x4", "batch_1-x3", "batch_1-x1"]
    assert [r.native_line for r in records] == [0, 1, 2, 3, 4]
    expired = records[2]
    assert (expired.status, expired.error, expired.tokens_in, expired.route) == (
        408, "too late", None, "a")  # an unknown custom_id counts to the first route
    first = records[0]
    assert (first.key, first.target, first.tokens_in, first.cost_usd, first.config_version,
            first.endpoint, first.native_batch) == ("alice", "oa/m1", 10, 7.5, 7, "chat",
                                                     "batch_1")


async def test_lines_handed_before_are_not_handed_again():
    """A pass after an interrupted one (handed=2): every line is counted in the totals, only
    the lines from the third on are handed over."""
    records = []
    tap = UsageTap("batch_2", "chat", None, {"r": "p/m"}, finished=[("log", records.append)],
                   handed=2)
    await tap.start()
    for custom_id in ("a", "b", "c"):
        tap.add(output_line(custom_id, 1, 1))
    assert tap.totals[("r", "p/m")].requests == 3
    assert [(r.request_id, r.native_line) for r in records] == [("batch_2-c", 2)]


def test_line_result_reads_what_a_provider_sends():
    assert line_result([1]) is None
    assert line_result({"custom_id": "c", "response": {"status_code": 400, "body": {
        "error": {"message": "bad"}}}, "error": None}).error == "bad"
    failed = line_result({"custom_id": "c", "response": None, "error": {"message": "no"}})
    assert (failed.status, failed.usage) == (502, None)


def test_request_ids_as_for_lines_the_gateway_sends():
    """A custom_id with characters a header cannot carry: the same request id as a line the
    gateway sends itself would get."""
    records = []
    tap = UsageTap("batch_9", "chat", None, {"r": "p/m"}, finished=[("log", records.append)])
    tap.add(output_line("é x\n", 1, 1))
    assert records[0].request_id == line_request_id("batch_9", "é x\n") == "batch_9-__x_"
