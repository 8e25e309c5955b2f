"""OpenAI's Responses API (POST /v1/responses) for the fake OpenAI upstream
(fake_upstream.FakeOpenAI): a response object, or its typed event stream, answering
"fake answer from <model>". It refuses what the real API would refuse of what the gateway
sends: a ``previous_response_id`` it never issued (the gateway keeps conversations itself),
input items that are not objects of a known type."""

from __future__ import annotations

import json

from aiohttp import web

ITEM_TYPES = {"message", "function_call", "function_call_output", "reasoning"}
USAGE = {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 4,
         "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 9}


def refusal(body: dict) -> str | None:
    """Why the real API would refuse ``body`` (None: it would not)."""
    if body.get("previous_response_id"):
        return f"Previous response with id '{body['previous_response_id']}' not found."
    given = body.get("input")
    if isinstance(given, list):
        for i, item in enumerate(given):
            kind = item.get("type", "message") if isinstance(item, dict) else None
            if kind not in ITEM_TYPES:
                return f"input[{i}]: invalid item"
    elif not isinstance(given, str):
        return "input: required"
    return None


def response(body: dict, text: str, status: str = "completed") -> dict:
    output = [] if status == "in_progress" else [{
        "id": "msg_fake", "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]}]
    return {"id": "resp_fake_openai", "object": "response", "created_at": 1, "status": status,
            "model": body["model"], "output": output, "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": [], "store": body.get("store", True),
            "previous_response_id": None, "error": None, "incomplete_details": None,
            "usage": None if status == "in_progress" else dict(USAGE)}


async def answer(request: web.Request, body: dict,
                 cut_after: int | None = None) -> web.StreamResponse:
    """The answer; streamed, the connection is reset after ``cut_after`` events if given."""
    problem = refusal(body)
    if problem is not None:
        return web.json_response({"error": {"message": problem, "type": "invalid_request_error",
                                            "param": None, "code": None}}, status=400)
    text = f"fake answer from {body['model']}"
    if not body.get("stream"):
        return web.json_response(response(body, text))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    where = {"item_id": "msg_fake", "output_index": 0}
    part = {"type": "output_text", "text": "", "annotations": []}
    events = [
        {"type": "response.created", "response": response(body, text, "in_progress")},
        {"type": "response.in_progress", "response": response(body, text, "in_progress")},
        {"type": "response.output_item.added", "output_index": 0, "item": {
            "id": "msg_fake", "type": "message", "status": "in_progress", "role": "assistant",
            "content": []}},
        {"type": "response.content_part.added", **where, "content_index": 0, "part": part},
        *({"type": "response.output_text.delta", **where, "content_index": 0,
           "delta": (" " if i else "") + word} for i, word in enumerate(text.split())),
        {"type": "response.output_text.done", **where, "content_index": 0, "text": text},
        {"type": "response.content_part.done", **where, "content_index": 0,
         "part": {**part, "text": text}},
        {"type": "response.output_item.done", "output_index": 0,
         "item": response(body, text)["output"][0]},
        {"type": "response.completed", "response": response(body, text)},
    ]
    for n, event in enumerate(events):
        if cut_after is not None and n >= cut_after:
            request.transport.close()  # a connection reset in the middle of the stream
            return resp
        data = json.dumps({**event, "sequence_number": n})
        await resp.write(f"event: {event['type']}\ndata: {data}\n\n".encode())
    await resp.write_eof()
    return resp
