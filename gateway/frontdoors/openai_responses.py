"""OpenAI's Responses API (POST /v1/responses) as a front door: pure translations, no I/O.

- ``parse``: a Responses request, checked (400 naming the field), its input as items in one
  normalized form (``Request``): what is stored, and what a continuation sends again.
- ``to_chat``: the request, after its conversation's history -> the gateway's internal shape
  (an OpenAI chat body), for targets without the Responses API.
- ``native_body``: the same request for an OpenAI target, which takes it as it is: the
  history inlined (the gateway keeps the conversation, not OpenAI: ``store: false``).
- ``from_chat``: a chat.completion -> a response object.
- ``StreamToResponses``: chat.completion.chunk events -> Responses' typed events
  (response.created ... response.completed, each with its ``sequence_number``).

What does not cross to chat targets (docs/frontdoors.md): reasoning items, hosted tools
(web search, file search, code interpreter, ...: OpenAI's own), files by ``file_id``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import GatewayError
from ..providers.openai import RESPONSES_API
from .chat_stream import ChatStreamTranslator

API = RESPONSES_API  # the door's NativeBody.api
MAX_INPUT_ITEMS = 10_000
ROLES = ("user", "assistant", "system", "developer")
USER_PARTS = ("input_text", "input_image", "input_file")
ASSISTANT_PARTS = ("output_text", "refusal", "input_text")
ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning")
# Request fields echoed in the response object, with the value when the client sent none.
ECHOED: dict[str, Any] = {
    "instructions": None, "max_output_tokens": None, "metadata": {}, "parallel_tool_calls": True,
    "reasoning": {"effort": None, "summary": None}, "temperature": None,
    "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": None,
    "truncation": "disabled", "user": None,
}
# History items an OpenAI target gets again: hosted tools' calls (web search, ...) stay out,
# their results are in the answers that follow them.
INLINED = frozenset({"message", "function_call", "function_call_output", "reasoning"})
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _invalid(message: str, param: str | None = None,
             code: str = "invalid_value") -> GatewayError:
    return GatewayError(400, message, code=code, param=param)


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(24).hex()}"


@dataclass(frozen=True, slots=True)
class Request:
    """A checked Responses request: the client's body, and its input as normalized items."""

    body: dict[str, Any]
    input: list[dict[str, Any]]
    previous_response_id: str | None
    store: bool
    stream: bool


# -- request: checks and the normalized input ------------------------------------------------


def parse(body: dict[str, Any]) -> Request:
    """Check ``body`` (GatewayError 400 naming the field); never mutates it."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _invalid("you must provide a model parameter (a route name)", "model",
                       "missing_required_parameter")
    for name, kind, what in (("instructions", str, "a string"), ("user", str, "a string"),
                             ("previous_response_id", str, "a string"),
                             ("metadata", dict, "an object"), ("text", dict, "an object"),
                             ("reasoning", dict, "an object")):
        if body.get(name) is not None and not isinstance(body[name], kind):
            raise _invalid(f"'{name}' must be {what}", name, "invalid_type")
    for name in ("store", "stream", "parallel_tool_calls", "background"):
        if body.get(name) is not None and not isinstance(body[name], bool):
            raise _invalid(f"'{name}' must be true or false", name, "invalid_type")
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise _invalid(f"'{name}' must be a number", name, "invalid_type")
    limit = body.get("max_output_tokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise _invalid("'max_output_tokens' must be a positive integer", "max_output_tokens")
    if body.get("background"):
        raise _invalid("background responses are not supported by this gateway", "background")
    if body.get("conversation") is not None:
        raise _invalid("conversations are not supported by this gateway: continue a response "
                       "with previous_response_id", "conversation")
    previous = body.get("previous_response_id") or None
    items = _input(body.get("input"), allow_empty=previous is not None)
    _tools(body.get("tools"))  # checked now, translated later
    return Request(body, items, previous, body.get("store") is not False,
                   bool(body.get("stream")))


def _input(raw: Any, allow_empty: bool) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        return [_message({"role": "user", "content": raw}, "input")]
    if raw is None and allow_empty:
        return []
    if not isinstance(raw, list) or (not raw and not allow_empty):
        raise _invalid("'input' must be a string or a non-empty list of items", "input")
    if len(raw) > MAX_INPUT_ITEMS:
        raise _invalid(f"'input' has {len(raw)} items; at most {MAX_INPUT_ITEMS} are accepted",
                       "input")
    return [_item(item, f"input[{i}]") for i, item in enumerate(raw)]


def _item(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _invalid(f"{where} must be an object", where, "invalid_type")
    kind = item.get("type", "message")
    if kind == "message":
        return _message(item, where)
    if kind == "function_call":
        for name in ("call_id", "name", "arguments"):
            if not isinstance(item.get(name), str):
                raise _invalid(f"{where}.{name} must be a string", f"{where}.{name}")
        return {"type": "function_call", "id": _given_id(item, "fc"), "call_id": item["call_id"],
                "name": item["name"], "arguments": item["arguments"], "status": "completed"}
    if kind == "function_call_output":
        if not isinstance(item.get("call_id"), str):
            raise _invalid(f"{where}.call_id must be a string", f"{where}.call_id")
        output = item.get("output")
        if not isinstance(output, (str, list)):
            raise _invalid(f"{where}.output must be a string or a list of parts",
                           f"{where}.output")
        if isinstance(output, list):
            output = [_part(p, "user", f"{where}.output[{j}]") for j, p in enumerate(output)]
        return {"type": "function_call_output", "id": _given_id(item, "fco"),
                "call_id": item["call_id"], "output": output, "status": "completed"}
    if kind == "reasoning":
        summary = item.get("summary", [])
        if not isinstance(summary, list):
            raise _invalid(f"{where}.summary must be a list", f"{where}.summary")
        return {**item, "id": _given_id(item, "rs"), "summary": summary}
    if kind == "item_reference":
        raise _invalid(f"{where}: item references are not supported by this gateway; send "
                       "previous_response_id or the item itself", f"{where}.type")
    raise _invalid(f"{where}.type: '{kind}' items are not supported by this gateway (it takes "
                   f"{', '.join(ITEM_TYPES)})", f"{where}.type")


def _given_id(item: dict[str, Any], prefix: str) -> str:
    given = item.get("id")
    return given if isinstance(given, str) and given else new_id(prefix)


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ROLES:
        raise _invalid(f"{where}.role must be one of {', '.join(ROLES)}", f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        part = "output_text" if role == "assistant" else "input_text"
        parts = [_text_part(part, content)]
    elif isinstance(content, list):
        parts = [_part(p, role, f"{where}.content[{j}]") for j, p in enumerate(content)]
    else:
        raise _invalid(f"{where}.content must be a string or a list of parts",
                       f"{where}.content")
    out: dict[str, Any] = {"type": "message", "id": _given_id(item, "msg"), "role": role,
                           "content": parts}
    if role == "assistant":
        out["status"] = "completed"
    return out


def _text_part(kind: str, text: str) -> dict[str, Any]:
    return {"type": kind, "text": text, "annotations": []} if kind == "output_text" else {
        "type": kind, "text": text}


def _part(part: Any, role: str, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    allowed = ASSISTANT_PARTS if role == "assistant" else USER_PARTS
    if kind not in allowed:
        raise _invalid(f"{where}.type: '{kind}' parts are not permitted in {role} content "
                       f"(it takes {', '.join(allowed)})", f"{where}.type")
    assert isinstance(part, dict)
    if kind in ("input_text", "output_text"):
        if not isinstance(part.get("text"), str):
            raise _invalid(f"{where}.text must be a string", f"{where}.text")
        return _text_part(kind, part["text"])
    if kind == "refusal":
        if not isinstance(part.get("refusal"), str):
            raise _invalid(f"{where}.refusal must be a string", f"{where}.refusal")
        return {"type": "refusal", "refusal": part["refusal"]}
    for name in ("image_url", "file_id", "file_data", "file_url", "filename", "detail"):
        if part.get(name) is not None and not isinstance(part[name], str):
            raise _invalid(f"{where}.{name} must be a string", f"{where}.{name}")
    if kind == "input_image" and not (part.get("image_url") or part.get("file_id")):
        raise _invalid(f"{where}: an input_image needs image_url or file_id", where)
    if kind == "input_file" and not (part.get("file_data") or part.get("file_id")
                                     or part.get("file_url")):
        raise _invalid(f"{where}: an input_file needs file_data, file_url or file_id", where)
    return {k: v for k, v in part.items() if v is not None}


def _tools(raw: Any) -> list[dict[str, Any]]:
    """The function tools as chat tools; hosted tools (web_search, ...) are OpenAI's own and
    left out."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _invalid("'tools' must be a list", "tools", "invalid_type")
    tools = []
    for j, tool in enumerate(raw):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise _invalid(f"tools[{j}].type must be a string", f"tools[{j}].type")
        if tool["type"] != "function":
            continue
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise _invalid(f"tools[{j}].name must be a non-empty string", f"tools[{j}].name")
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _invalid(f"tools[{j}].parameters must be an object", f"tools[{j}].parameters")
        function: dict[str, Any] = {"name": tool["name"],
                                    "parameters": parameters or {"type": "object",
                                                                 "properties": {}}}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        tools.append({"type": "function", "function": function})
    return tools


# -- request: the chat translation, the native body ----------------------------------------


def to_chat(request: Request, history: list[dict[str, Any]],
            strict: bool = True) -> dict[str, Any]:
    """The internal (OpenAI chat) body: ``history`` (the items of the conversation so far)
    and the request's own input as messages. Files and images by ``file_id`` (or a file by
    URL) cannot cross: a 400, or (not ``strict``: a body only OpenAI targets will answer,
    which middleware reads) left out."""
    body = request.body
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    for item in (*history, *request.input):
        _append(messages, item, strict)
    if not messages:
        raise _invalid("the request has no input", "input")
    out: dict[str, Any] = {"model": body["model"], "messages": messages}
    for name in ("temperature", "top_p", "user"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"))
        if choice is not None:
            out["tool_choice"] = choice
        if body.get("parallel_tool_calls") is not None:
            out["parallel_tool_calls"] = body["parallel_tool_calls"]
    response_format = _format((body.get("text") or {}).get("format"))
    if response_format is not None:
        out["response_format"] = response_format
    effort = (body.get("reasoning") or {}).get("effort")
    if isinstance(effort, str):
        out["reasoning_effort"] = effort
    if request.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # response.completed reports usage
    return out


def _append(messages: list[dict[str, Any]], item: dict[str, Any], strict: bool) -> None:
    kind = item["type"]
    if kind == "message":
        role, parts = item["role"], item["content"]
        if role == "assistant":
            text = "".join(p.get("text") or p.get("refusal") or "" for p in parts)
            messages.append({"role": "assistant", "content": text})
        elif role in ("system", "developer"):
            messages.append({"role": "system", "content": "\n\n".join(
                p["text"] for p in parts if p["type"] == "input_text")})
        else:
            messages.append({"role": "user", "content": _user_content(parts, strict)})
    elif kind == "function_call":
        call = {"id": item["call_id"], "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":  # text and calls of one turn
            last.setdefault("tool_calls", []).append(call)
            if not last.get("content"):
                last["content"] = None
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item["output"]
        text = output if isinstance(output, str) else "\n".join(
            p.get("text", "") for p in output if p["type"] == "input_text")
        messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
    # reasoning items: OpenAI's own (encrypted or summarised): no other provider reads them


def _user_content(parts: list[dict[str, Any]], strict: bool) -> Any:
    if len(parts) == 1 and parts[0]["type"] == "input_text":
        return parts[0]["text"]
    out: list[dict[str, Any]] = []
    for part in parts:
        kind = part["type"]
        if kind == "input_text":
            out.append({"type": "text", "text": part["text"]})
        elif not strict and not (part.get("image_url") or part.get("file_data")):
            continue
        elif kind == "input_image":
            if not part.get("image_url"):
                raise _invalid("input_image by file_id reaches OpenAI targets only; send an "
                               "image_url (or a data: URL)", "input")
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail"):
                image["detail"] = part["detail"]
            out.append({"type": "image_url", "image_url": image})
        else:  # input_file
            if not part.get("file_data"):
                raise _invalid("input_file by file_id or file_url reaches OpenAI targets only; "
                               "send file_data", "input")
            out.append({"type": "file", "file": {"file_data": part["file_data"],
                                                 "filename": part.get("filename") or "file"}})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" \
            and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    if isinstance(choice, dict):
        return "auto"  # a hosted tool (web_search, ...): not a function any target can call
    raise _invalid("'tool_choice' must be auto, none, required or {type: function, name}",
                   "tool_choice")


def _format(spec: Any) -> dict[str, Any] | None:
    if spec is None:
        return None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema" and isinstance(spec.get("schema"), dict):
        schema = {k: spec[k] for k in ("name", "schema", "strict", "description") if k in spec}
        schema.setdefault("name", "response")
        return {"type": "json_schema", "json_schema": schema}
    raise _invalid("text.format must be {type: text}, {type: json_object} or {type: "
                   "json_schema, name, schema}", "text.format")


def native_body(request: Request, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The body an OpenAI target gets: the client's, with the history inlined before its input
    and ``store: false``. OpenAI holds none of the history's items, so they go without their
    ids (earlier answers as plain assistant messages), and reasoning items only where they
    carry their encrypted content (hosted tools' calls not at all)."""
    body = {k: v for k, v in request.body.items() if k != "previous_response_id"}
    if history:
        earlier = [_inlined(item) for item in history if item["type"] in INLINED
                   and (item["type"] != "reasoning" or item.get("encrypted_content"))]
        given = request.body.get("input")
        now = [{"role": "user", "content": given}] if isinstance(given, str) else (given or [])
        body["input"] = [*earlier, *now]
    body["store"] = False
    return body


def _inlined(item: dict[str, Any]) -> dict[str, Any]:
    if item["type"] == "reasoning":
        return item
    if item["type"] == "message" and item["role"] == "assistant":
        return {"role": "assistant", "content": "".join(
            p.get("text") or p.get("refusal") or "" for p in item["content"])}
    return {k: v for k, v in item.items() if k not in ("id", "status")}


# -- answers: chat -> response -------------------------------------------------------------


def response_object(request: Request, id: str, model: str, output: list[dict[str, Any]],
                    usage: dict[str, Any] | None, finish: str | None,
                    created: float | None = None) -> dict[str, Any]:
    """A whole response object (``finish`` is the chat finish_reason; None: in progress)."""
    body = request.body
    reason = INCOMPLETE.get(finish or "")
    status = "in_progress" if finish is None else ("incomplete" if reason else "completed")
    created_at = int(created if created is not None else time.time())
    out: dict[str, Any] = {
        "id": id, "object": "response", "created_at": created_at, "status": status,
        "background": False, "error": None,
        "incomplete_details": {"reason": reason} if reason else None,
        "model": model, "output": output, "previous_response_id": request.previous_response_id,
        "store": request.store, "usage": usage,
    }
    for name, default in ECHOED.items():
        value = body.get(name)
        out[name] = default if value is None else value
    if status == "completed":
        out["completed_at"] = int(time.time())
    return out


def usage_of(usage: Any) -> dict[str, Any]:
    """The Responses usage of a chat usage object."""
    usage = usage if isinstance(usage, dict) else {}
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details")
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    done = usage.get("completion_tokens_details")
    reasoning = int(done.get("reasoning_tokens") or 0) if isinstance(done, dict) else 0
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": int(usage.get("total_tokens") or prompt + completion)}


def message_item(text: str, id: str | None = None, status: str = "completed",
                 refusal: str | None = None) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if text:
        content.append({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {"id": id or new_id("msg"), "type": "message", "status": status,
            "role": "assistant", "content": content}


def call_item(call_id: str, name: str, arguments: str, id: str | None = None,
              status: str = "completed") -> dict[str, Any]:
    return {"id": id or new_id("fc"), "type": "function_call", "status": status,
            "call_id": call_id, "name": name, "arguments": arguments}


def from_chat(answer: dict[str, Any], request: Request, id: str,
              model: str) -> dict[str, Any]:
    """A chat.completion as a response object; ``model`` is the client's (route) name."""
    choices = answer.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    if message.get("content") or message.get("refusal"):
        output.append(message_item(str(message.get("content") or ""),
                                   refusal=message.get("refusal")))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        output.append(call_item(call.get("id") or new_id("call"), function.get("name") or "",
                                function.get("arguments") or ""))
    return response_object(request, id, model, output, usage_of(answer.get("usage")),
                           choice.get("finish_reason") or "stop")


# -- streams: chat chunks -> Responses events -----------------------------------------------


def event(payload: dict[str, Any]) -> bytes:
    return b"event: " + payload["type"].encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class StreamToResponses(ChatStreamTranslator):
    """OpenAI chat.completion.chunk bytes in (fed as they come), Responses event bytes out.
    ``finish()`` closes the open item and writes response.completed (or .incomplete);
    ``response`` is then the whole response object."""

    def __init__(self, request: Request, id: str, model: str):
        super().__init__()
        self.request, self.id, self.model = request, id, model
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.response: dict[str, Any] | None = None
        self._created = time.time()
        self._finish: str | None = None
        self._usage: dict[str, Any] = usage_of(None)

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event(payload)

    def _snapshot(self, finish: str | None) -> dict[str, Any]:
        return response_object(self.request, self.id, self.model, list(self.output),
                               self._usage if finish else None, finish, self._created)

    def finish(self) -> bytes:
        out = self._start()
        out.extend(self._close())
        finish = self._finish or "stop"
        self.response = self._snapshot(finish)
        kind = "response.incomplete" if self.response["status"] == "incomplete" \
            else "response.completed"
        out.append(self._event(kind, response=self.response))
        return b"".join(out)

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        return [self._event("response.created", response=self._snapshot(None)),
                self._event("response.in_progress", response=self._snapshot(None))]

    def _usage_of(self, usage: dict[str, Any]) -> None:
        self._usage = usage_of(usage)

    def _finish_of(self, reason: str) -> None:
        self._finish = reason

    def _text(self, text: str) -> list[bytes]:
        out = []
        if self._open != "text":
            out.extend(self._open_item("text", message_item("", status="in_progress")))
            out.append(self._event("response.content_part.added", **self._where(),
                                   content_index=0, part=_empty_text()))
            self.output[-1]["content"].append(_empty_text())
        self.output[-1]["content"][0]["text"] += text
        out.append(self._event("response.output_text.delta", **self._where(), content_index=0,
                               delta=text, logprobs=[]))
        return out

    def _tool_delta(self, call: dict[str, Any]) -> list[bytes]:
        out = []
        slot = f"tool:{call.get('index', 0)}"
        function = call.get("function") or {}
        if self._open != slot:
            out.extend(self._open_item(slot, call_item(
                call.get("id") or new_id("call"), function.get("name") or "", "",
                status="in_progress")))
        if function.get("arguments"):
            self.output[-1]["arguments"] += function["arguments"]
            out.append(self._event("response.function_call_arguments.delta", **self._where(),
                                   delta=function["arguments"]))
        return out

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.output[-1]["id"], "output_index": len(self.output) - 1}

    def _open_item(self, kind: str, item: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self.output.append(item)
        self._open = kind
        out.append(self._event("response.output_item.added", output_index=len(self.output) - 1,
                               item=dict(item, content=[]) if kind == "text" else dict(item)))
        return out

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        item, where = self.output[-1], self._where()
        out = []
        if self._open == "text":
            part = item["content"][0]
            out.append(self._event("response.output_text.done", **where, content_index=0,
                                   text=part["text"], logprobs=[]))
            out.append(self._event("response.content_part.done", **where, content_index=0,
                                   part=part))
        else:
            out.append(self._event("response.function_call_arguments.done", **where,
                                   name=item["name"], arguments=item["arguments"]))
        item["status"] = "completed"
        out.append(self._event("response.output_item.done", output_index=where["output_index"],
                               item=item))
        self._open = None
        return out


def _empty_text() -> dict[str, Any]:
    return {"type": "output_text", "text": "", "annotations": [], "logprobs": []}


# -- errors --------------------------------------------------------------------------------


def error_event(status: int, message: str, code: str | None, sequence: int) -> bytes:
    """The ``error`` event that ends a stream which failed after its first byte: Responses'
    fields (code, message, param, sequence_number) and, as OpenAI's SDKs raise on it, the
    same as an ``error`` object."""
    error = {"type": "server_error" if status >= 500 else "invalid_request_error",
             "code": code, "message": message, "param": None}
    return event({"type": "error", "code": code, "message": message, "param": None,
                  "sequence_number": sequence, "error": error})
