"""A fake Cohere v2 API (POST /v2/chat, POST /v2/embed) on a loopback port.

It validates requests as the real API does (bearer key, known fields only, message roles and
shapes, every tool call answered by a tool result with its id, tool_choice values, p and k
ranges, embed input types) and answers in the real wire format: the v2 chat response, the v2
chat stream (SSE: message-start, content-start/delta/end, tool-plan-delta, tool-call-start/
delta/end, message-end) and the v2 embed response.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from aiohttp import web

from .fake_server import FakeServer, Script, answer, words

CHAT = {"model", "messages", "tools", "documents", "citation_options", "response_format",
        "safety_mode", "max_tokens", "stop_sequences", "temperature", "seed", "frequency_penalty",
        "presence_penalty", "k", "p", "logprobs", "tool_choice", "strict_tools", "stream",
        "thinking", "priority"}
EMBED = {"model", "texts", "images", "inputs", "input_type", "embedding_types", "truncate",
         "output_dimension", "max_tokens", "priority"}
INPUT_TYPES = {"search_document", "search_query", "classification", "clustering", "image"}


class Invalid(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def err(message: str) -> dict:
    return {"id": str(uuid.uuid4()), "message": message}


class FakeCohere(FakeServer):
    provider = "cohere"

    def __init__(self, api_key: str = "cohere-test-key", max_input_chars: int = 20000):
        super().__init__()
        self.api_key = api_key
        self.max_input_chars = max_input_chars

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/chat", self._chat)
        app.router.add_post("/v2/embed", self._embed)
        app.router.add_post("/v2/rerank", self._rerank)

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.reject(401, err("invalid api token"))
        return None

    def _scripted_error(self, s: Script) -> web.Response:
        message = s.message or {
            429: "You are using a Trial key, which is limited to 10 API calls / minute. You can "
                 "continue to use the Trial key for free or upgrade to a Production key",
            500: "internal server error, this has been reported to our developers",
            503: "service unavailable",
        }.get(s.status, "invalid request")
        return self.reject(s.status, err(message), s.headers, scripted=True)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        _, body = await self.record(request)
        denied = self._auth(request)
        if denied:
            return denied
        if not isinstance(body, dict):
            return self.reject(400, err("invalid request: body must be a JSON object"))
        script = self.next_script(str(body.get("model")))
        if script.status != 200:
            return self._scripted_error(script)
        try:
            chars = validate_chat(body)
            if chars > self.max_input_chars:
                raise Invalid(f"too many tokens: total number of tokens in the prompt cannot exceed "
                              f"{self.max_input_chars // 4} - received {chars // 4}. Try using a "
                              "shorter prompt, or enabling prompt truncating.")
        except Invalid as exc:
            return self.reject(exc.status, err(exc.message))
        messages = body["messages"]
        last = messages[-1]
        results = []
        for m in reversed(messages):
            if m["role"] != "tool":
                break
            results.insert(0, m["content"] if isinstance(m["content"], str) else
                           "".join(p.get("text", "") for p in m["content"]))
        user = last.get("content") if last["role"] == "user" else ""
        user_text = user if isinstance(user, str) else " ".join(
            p.get("text", "") for p in user if p.get("type") == "text")
        tools = [(t["function"]["name"], t["function"].get("parameters")) for t in body.get("tools") or []]
        choice = body.get("tool_choice")
        ans = answer("cohere", tools=tools, tool_mode="none" if choice == "NONE" else "auto",
                     allowed=None, tool_results=results or None, user_text=user_text,
                     json_mode=(body.get("response_format") or {}).get("type") == "json_object",
                     prompt_chars=chars, script=script)
        calls = [{"id": f"{name}_{i}fake", "type": "function",
                  "function": {"name": name, "arguments": json.dumps(args)}}
                 for i, (name, args) in enumerate(ans.calls)]
        finish = script.finish or ("TOOL_CALL" if calls else "COMPLETE")
        text = ans.text
        if text and body.get("max_tokens") and len(text.split()) > body["max_tokens"]:
            text, finish = " ".join(text.split()[: body["max_tokens"]]), script.finish or "MAX_TOKENS"
        plan = "I will call the tools." if calls else None
        thinking = ans.reasoning or ("Thinking it over." if (body.get("thinking") or {}).get("type") == "enabled" else None)
        usage = {"billed_units": {"input_tokens": ans.prompt_tokens, "output_tokens": ans.completion_tokens},
                 "tokens": {"input_tokens": ans.prompt_tokens + (0 if script.usage else 10),
                            "output_tokens": ans.completion_tokens}}
        if body.get("stream"):
            return await self._stream(request, script, text, thinking, plan, calls, finish, usage)
        content = ([{"type": "thinking", "thinking": thinking}] if thinking else []) + \
            ([{"type": "text", "text": text}] if text else [])
        message = {"role": "assistant", "content": content}
        if calls:
            message.update(tool_plan=plan, tool_calls=calls)
        return web.json_response({"id": "fake-cohere-1", "finish_reason": finish, "message": message,
                                  "usage": usage}, headers=script.headers)

    async def _stream(self, request, s: Script, text, thinking, plan, calls, finish, usage):
        events: list[tuple[str, dict]] = [("message-start", {"id": "fake-cohere-1", "delta": {"message": {
            "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}})]
        index = 0
        if thinking:
            events += [("content-start", {"index": index, "delta": {"message": {"content": {"type": "thinking", "thinking": ""}}}}),
                       ("content-delta", {"index": index, "delta": {"message": {"content": {"thinking": thinking}}}}),
                       ("content-end", {"index": index})]
            index += 1
        if text:
            events.append(("content-start", {"index": index, "delta": {"message": {"content": {"type": "text", "text": ""}}}}))
            events += [("content-delta", {"index": index, "delta": {"message": {"content": {"text": w}}}})
                       for w in words(text)]
            events.append(("content-end", {"index": index}))
        if plan:
            events += [("tool-plan-delta", {"delta": {"message": {"tool_plan": w}}}) for w in words(plan)]
        for i, call in enumerate(calls):
            args = call["function"]["arguments"]
            events.append(("tool-call-start", {"index": i, "delta": {"message": {"tool_calls": {
                "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""}}}}}))
            for k in range(0, len(args), 5):
                events.append(("tool-call-delta", {"index": i, "delta": {"message": {"tool_calls": {
                    "function": {"arguments": args[k:k + 5]}}}}}))
            events.append(("tool-call-end", {"index": i}))
        end = s.stream_error or ("ERROR" if s.stream_error_after is not None else finish)
        events.append(("message-end", {"delta": {"finish_reason": end, "usage": usage}}))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **s.headers})
        await resp.prepare(request)
        for i, (kind, data) in enumerate(events):
            if s.cut_after is not None and i >= s.cut_after:
                request.transport.close()
                return resp
            if s.stream_error_after is not None and i >= s.stream_error_after:
                kind, data = events[-1]  # the error ends the stream at once
            payload = json.dumps({"type": kind, **data})
            await resp.write(f"event: {kind}\ndata: {payload}\n\n".encode())
            await asyncio.sleep(0)
            if kind == "message-end":
                break
        await resp.write_eof()
        return resp

    async def _embed(self, request: web.Request) -> web.Response:
        _, body = await self.record(request)
        denied = self._auth(request)
        if denied:
            return denied
        script = self.next_script(str((body or {}).get("model")))
        if script.status != 200:
            return self._scripted_error(script)
        try:
            for key in body:
                if key not in EMBED:
                    raise Invalid(f"invalid request: unknown field: parameter '{key}' is not a valid field")
            texts = body.get("texts")
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                raise Invalid("invalid request: texts must be a non-empty array of strings")
            if len(texts) > 96:
                raise Invalid("invalid request: texts cannot have more than 96 elements")
            if body.get("input_type") not in INPUT_TYPES:
                raise Invalid("invalid request: valid input_type must be provided with the provided model")
            types = body.get("embedding_types") or []
            if not types or any(t not in ("float", "int8", "uint8", "binary", "ubinary", "base64") for t in types):
                raise Invalid("invalid request: embedding_types must be a list of valid types")
        except Invalid as exc:
            return self.reject(exc.status, err(exc.message))
        dims = body.get("output_dimension", 6)
        vectors = [[round(((sum(map(ord, t)) * (k + 5)) % 89 + 1) / 90, 4) for k in range(dims)] for t in texts]
        tokens = sum(len(t.split()) for t in texts)
        return web.json_response({"id": "fake-embed-1", "texts": texts, "embeddings": {"float": vectors},
                                  "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
                                  "response_type": "embeddings_by_type"})


    async def _rerank(self, request: web.Request) -> web.Response:
        """Cohere's v2 rerank: documents must be strings; no document in the results."""
        _, body = await self.record(request)
        denied = self._auth(request)
        if denied:
            return denied
        allowed = {"model", "query", "documents", "top_n", "max_tokens_per_doc"}
        extra = set(body) - allowed
        documents = body.get("documents")
        if extra:
            return self.reject(400, err(f"invalid request: unknown field: parameter "
                                        f"'{sorted(extra)[0]}' is not a valid field"))
        if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
            return self.reject(400, err("invalid request: documents must be strings"))
        words = set(body["query"].lower().split())
        scored = [{"index": i, "relevance_score": round(len(words & set(d.lower().split())) / 5, 3)}
                  for i, d in enumerate(documents)]
        scored.sort(key=lambda r: -r["relevance_score"])
        return web.json_response({"id": "fake-rerank", "results": scored[: body.get("top_n") or
                                                                          len(scored)],
                                  "meta": {"api_version": {"version": "2"},
                                           "billed_units": {"search_units": 1}}})


# -- request validation ----------------------------------------------------------------------------


def _text(content, where: str, allow=("text",)) -> int:
    if isinstance(content, str):
        return len(content)
    if not isinstance(content, list):
        raise Invalid(f"invalid request: {where}.content must be a string or a list of content blocks")
    chars = 0
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in allow:
            raise Invalid(f"invalid request: {where}.content[{j}]: unsupported content type '{kind}'")
        if kind == "text":
            if not isinstance(block.get("text"), str) or set(block) - {"type", "text"}:
                raise Invalid(f"invalid request: {where}.content[{j}].text must be a string")
            chars += len(block["text"])
        elif kind == "image_url":
            url = (block.get("image_url") or {}).get("url", "")
            if not url.startswith(("data:image/", "https://")):
                raise Invalid(f"invalid request: {where}.content[{j}].image_url.url is not a valid image URL")
            chars += 1000
        elif kind == "document":
            chars += len(json.dumps(block.get("document")))
    return chars


def validate_chat(body: dict) -> int:
    for key in body:
        if key not in CHAT:
            raise Invalid(f"invalid request: unknown field: parameter '{key}' is not a valid field")
    if not isinstance(body.get("model"), str):
        raise Invalid("invalid request: model must be a string")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("invalid request: messages must be a non-empty list")
    chars = 0
    pending: dict[str, int] = {}  # tool call id -> message index that made it
    for i, m in enumerate(messages):
        where, role = f"messages[{i}]", m.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            raise Invalid(f"invalid request: {where}.role must be one of system, user, assistant, tool")
        allowed = {"system": {"role", "content"}, "user": {"role", "content"},
                   "assistant": {"role", "content", "tool_plan", "tool_calls", "citations"},
                   "tool": {"role", "tool_call_id", "content"}}[role]
        if set(m) - allowed:
            raise Invalid(f"invalid request: {where}: unknown field '{sorted(set(m) - allowed)[0]}'")
        if role != "tool" and pending:
            raise Invalid(f"invalid request: the tool calls {sorted(pending)} need tool results "
                          f"before {where}")
        if role in ("system", "user"):
            if "content" not in m:
                raise Invalid(f"invalid request: {where}.content is required")
            chars += _text(m["content"], where, ("text", "image_url") if role == "user" else ("text",))
        elif role == "assistant":
            if not m.get("content") and not m.get("tool_calls"):
                raise Invalid(f"invalid request: {where}: an assistant message needs content or tool_calls")
            if "content" in m:
                chars += _text(m["content"], where)
            for j, call in enumerate(m.get("tool_calls") or []):
                fn = call.get("function") or {}
                if call.get("type") != "function" or not call.get("id") or not isinstance(fn.get("name"), str):
                    raise Invalid(f"invalid request: {where}.tool_calls[{j}] needs id, type function and function.name")
                try:
                    json.loads(fn.get("arguments", ""))
                except (TypeError, json.JSONDecodeError):
                    raise Invalid(f"invalid request: {where}.tool_calls[{j}].function.arguments must be a JSON string") from None
                pending[call["id"]] = i
                chars += len(fn["arguments"])
        else:
            if m.get("tool_call_id") not in pending:
                raise Invalid(f"invalid request: {where}.tool_call_id '{m.get('tool_call_id')}' does "
                              "not match any tool call")
            del pending[m["tool_call_id"]]
            chars += _text(m.get("content"), where, ("text", "document"))
    names = set()
    for j, tool in enumerate(body.get("tools") or []):
        fn = tool.get("function") or {}
        if tool.get("type") != "function" or not isinstance(fn.get("name"), str) or set(fn) - {"name", "description", "parameters"}:
            raise Invalid(f"invalid request: tools[{j}] must be {{type: function, function: {{name, description, parameters}}}}")
        if not isinstance(fn.get("parameters", {}), dict):
            raise Invalid(f"invalid request: tools[{j}].function.parameters must be a JSON schema object")
        names.add(fn["name"])
    if "tool_choice" in body:
        if body["tool_choice"] not in ("REQUIRED", "NONE"):
            raise Invalid("invalid request: tool_choice must be one of REQUIRED, NONE")
        if not names:
            raise Invalid("invalid request: tool_choice requires tools")
    if "p" in body and not 0.01 <= body["p"] <= 0.99:
        raise Invalid("invalid request: p must be between 0.01 and 0.99")
    if "k" in body and not 0 <= body["k"] <= 500:
        raise Invalid("invalid request: k must be between 0 and 500")
    fmt = body.get("response_format")
    if fmt is not None and (fmt.get("type") not in ("text", "json_object") or set(fmt) - {"type", "json_schema"}):
        raise Invalid("invalid request: response_format.type must be text or json_object")
    if body.get("stop_sequences") is not None and (
            not isinstance(body["stop_sequences"], list) or len(body["stop_sequences"]) > 5):
        raise Invalid("invalid request: stop_sequences must be a list of at most 5 strings")
    thinking = body.get("thinking")
    if thinking is not None and (thinking.get("type") not in ("enabled", "disabled") or set(thinking) - {"type", "token_budget"}):
        raise Invalid("invalid request: thinking.type must be enabled or disabled")
    return chars
