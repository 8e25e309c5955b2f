"""OpenAI chat bodies -> Anthropic Messages API requests, as pure functions (no I/O).

The way back (responses, stream events, errors) is in anthropic_response.py. Choices made where
the two APIs differ are documented in docs/providers.md ("anthropic"); the constants below are
the numbers quoted there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .native import TranslationError, arguments_of, parse_data_url

DEFAULT_MAX_TOKENS = 4096  # sent when the client gives neither max_tokens nor max_completion_tokens
MIN_THINKING_BUDGET = 1024  # Anthropic refuses smaller budget_tokens
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}  # reasoning_effort -> budget_tokens
NO_THINKING = frozenset({"none", "minimal"})
# A conversation must start with a user turn; one that starts with the assistant gets this first.
FIRST_USER_PLACEHOLDER = "."
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
JSON_OBJECT_INSTRUCTION = (
    "Respond only with a single valid JSON object, without any text before or after it."
)
JSON_SCHEMA_INSTRUCTION = (
    "Respond only with a single valid JSON value that conforms to this JSON Schema, "
    "without any text before or after it:\n"
)
JSON_TOOL_DESCRIPTION = "Give your answer by calling this tool with the JSON the user asked for."
HISTORY_TOOL_DESCRIPTION = "A tool called earlier in this conversation (declared by the gateway)."
# Body keys sent on as they are: Anthropic-native extras a client may add (extra_body).
PASSTHROUGH = ("top_k", "thinking")


@dataclass(frozen=True, slots=True)
class Translated:
    body: dict[str, Any]
    # Name of the forced tool that carries a json_schema answer: its input becomes the content.
    json_tool: str | None = None


def to_anthropic(body: dict[str, Any], *, stream: bool = False,
                 default_max_tokens: int = DEFAULT_MAX_TOKENS) -> Translated:
    """An OpenAI chat.completions body as an Anthropic /v1/messages body. Never mutates ``body``."""
    n = body.get("n")
    if n not in (None, 1):
        raise TranslationError("anthropic returns one choice per request: 'n' must be 1", "n")
    system, messages = _messages(body.get("messages"))
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"), bool(tools))
    if not tools and _has_tool_blocks(messages):
        # Anthropic refuses tool_use/tool_result blocks without tool definitions; OpenAI does
        # not need them on later turns. Declare the tools named in the history, uncallable.
        tools = [{"name": name, "description": HISTORY_TOOL_DESCRIPTION,
                  "input_schema": {"type": "object"}} for name in _history_tool_names(messages)]
        choice = {"type": "none"}

    out: dict[str, Any] = {"model": body.get("model")}
    limit = _max_tokens(body)
    max_tokens = limit or default_max_tokens
    thinking = body.get("thinking")
    effort = body.get("reasoning_effort")
    if thinking is None and effort is not None:
        budget = _budget(effort)
        forced = choice is not None and choice["type"] in ("any", "tool")
        if budget and not forced and not _needs_thinking_history(messages):
            if limit is None:
                max_tokens = default_max_tokens + budget
            else:
                budget = min(budget, limit - 1)
            if budget >= MIN_THINKING_BUDGET:
                thinking = {"type": "enabled", "budget_tokens": budget}
    enabled = thinking if isinstance(thinking, dict) and thinking.get("type") == "enabled" else None
    thinking_on = enabled is not None
    budget_tokens = enabled.get("budget_tokens") if enabled is not None else None
    if limit is None and isinstance(budget_tokens, int) and 0 < budget_tokens < 2**31:
        # (a larger budget goes on as it is, for Anthropic to refuse; added up, it could
        # overflow the 64-bit integers JSON encoders write)
        max_tokens = max(max_tokens, default_max_tokens + budget_tokens)

    json_tool = None
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
    elif isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        given = fmt.get("json_schema")
        spec: dict[str, Any] = given if isinstance(given, dict) else {}
        schema = spec.get("schema") or {"type": "object"}
        if not isinstance(schema, dict):
            raise TranslationError("response_format.json_schema.schema must be an object",
                                   "response_format")
        if not tools and not thinking_on and schema.get("type") == "object":
            json_tool = str(spec.get("name") or "json_output")
            tools = [{"name": json_tool, "description": JSON_TOOL_DESCRIPTION, "input_schema": schema}]
            choice = {"type": "tool", "name": json_tool}
        else:
            text = JSON_SCHEMA_INSTRUCTION + orjson.dumps(schema).decode()
            system.append({"type": "text", "text": text})
    elif fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise TranslationError("response_format must be text, json_object or json_schema",
                               "response_format")

    out["max_tokens"] = max_tokens
    out["messages"] = messages
    if system:
        out["system"] = _collapse(system)
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TranslationError(f"'{key}' must be a number", key)
            out[key] = value
    if "temperature" in out:
        out["temperature"] = min(out["temperature"], 1.0)  # OpenAI's range is 0..2
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, (str, list)):
        raise TranslationError("'stop' must be a string or a list of strings", "stop")
    stops = [stop] if isinstance(stop, str) else list(stop or ())
    stops = [s for s in stops if isinstance(s, str) and s.strip()]
    if stops:
        out["stop_sequences"] = stops
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])}
    if tools:
        out["tools"] = tools
        if choice is not None:
            out["tool_choice"] = choice
    for key in PASSTHROUGH:
        if body.get(key) is not None:
            out[key] = body[key]
    if thinking is not None:
        out["thinking"] = thinking
    if thinking_on:
        # Extended thinking allows no temperature but 1, no top_k, and top_p only >= 0.95.
        if out.get("temperature") not in (None, 1, 1.0):
            del out["temperature"]
        out.pop("top_k", None)
        if out.get("top_p") is not None and out["top_p"] < 0.95:
            del out["top_p"]
    if stream:
        out["stream"] = True
    return Translated(out, json_tool)


# -- messages ------------------------------------------------------------------------------


def _messages(raw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, alternating messages starting with user)."""
    if not isinstance(raw, list) or not raw:
        raise TranslationError("'messages' must be a non-empty list", "messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise TranslationError(f"messages[{i}] must be an object", f"messages[{i}]")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), f"messages[{i}].content"))
        elif role == "user":
            _append(turns, "user", _user_blocks(message.get("content"), f"messages[{i}].content"))
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(message, i))
        elif role == "tool":
            _append(turns, "user", [_tool_result(message, i)])
        else:
            raise TranslationError(f"messages[{i}]: role '{role}' is not supported for anthropic",
                                   f"messages[{i}].role")
    if not turns:
        raise TranslationError("'messages' needs at least one user or assistant message",
                               "messages")
    if turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [_text(FIRST_USER_PLACEHOLDER)]})
    for turn in turns:
        if turn["role"] == "user":  # tool results must open the turn that answers the calls
            blocks = turn["content"]
            turn["content"] = ([b for b in blocks if b["type"] == "tool_result"]
                               + [b for b in blocks if b["type"] != "tool_result"])
    last = turns[-1]
    if last["role"] == "assistant":  # a prefill may not end in whitespace
        blocks = last["content"]
        if blocks and blocks[-1]["type"] == "text":
            blocks[-1] = {**blocks[-1], "text": blocks[-1]["text"].rstrip()}
            if not blocks[-1]["text"]:
                blocks.pop()
        if not blocks:
            turns.pop()
    for turn in turns:
        turn["content"] = _collapse(turn["content"])
    return system, turns


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Add a turn, merged into the previous one when the role is the same (roles alternate)."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": list(blocks)})


def _collapse(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A single plain text block as a string, the compact form; anything else as blocks."""
    if len(blocks) == 1 and set(blocks[0]) == {"type", "text"} and blocks[0]["type"] == "text":
        return str(blocks[0]["text"])
    return blocks


def _text(text: str, part: dict[str, Any] | None = None) -> dict[str, Any]:
    block = {"type": "text", "text": text}
    if part and part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _text_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    """Text only (system prompts, tool results): empty text is dropped (Anthropic refuses it)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [_text(content)] if content.strip() else []
    if not isinstance(content, list):
        raise TranslationError(f"{param} must be a string or a list of parts", param)
    blocks = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
            raise TranslationError(f"{param}[{j}]: only text parts are allowed here", param)
        text = part.get("text") if part.get("type") == "text" else part.get("refusal")
        if isinstance(text, str) and text.strip():
            blocks.append(_text(text, part))
    return blocks


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return _text_blocks(content, param)
    if not isinstance(content, list):
        raise TranslationError(f"{param} must be a string or a list of parts", param)
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.extend(_text_blocks([part], f"{param}[{j}]"))
        elif kind == "image_url":
            blocks.append(_image(part, f"{param}[{j}]"))
        elif kind == "file":
            blocks.append(_file(part, f"{param}[{j}]"))
        else:
            raise TranslationError(f"{param}[{j}]: content part type '{kind}' is not supported "
                                   "for anthropic", f"{param}[{j}].type")
    return blocks


def _image(part: dict[str, Any], param: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise TranslationError(f"{param}: image_url.url must be a string", param)
    inline = parse_data_url(url, param)
    if inline:
        media_type, data = inline
        if media_type == "application/pdf":
            return {"type": "document",
                    "source": {"type": "base64", "media_type": media_type, "data": data}}
        if media_type not in IMAGE_TYPES:
            raise TranslationError(f"{param}: image type {media_type} is not supported for "
                                   "anthropic (jpeg, png, gif, webp)", param)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise TranslationError(f"{param}: an image must be a data URL or an http(s) URL", param)


def _file(part: dict[str, Any], param: str) -> dict[str, Any]:
    file = part.get("file") or {}
    data = file.get("file_data") if isinstance(file, dict) else None
    inline = parse_data_url(data, param) if isinstance(data, str) else None
    if not inline or inline[0] != "application/pdf":
        raise TranslationError(f"{param}: only PDF files given as file_data (a base64 data URL) "
                               "are supported for anthropic", param)
    return {"type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": inline[1]}}


def _assistant_blocks(message: dict[str, Any], i: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for block in message.get("thinking_blocks") or ():  # given back from an earlier answer
        if isinstance(block, dict) and block.get("type") == "thinking" and block.get("signature"):
            blocks.append({"type": "thinking", "thinking": block.get("thinking") or "",
                           "signature": block["signature"]})
        elif isinstance(block, dict) and block.get("type") == "redacted_thinking":
            blocks.append({"type": "redacted_thinking", "data": block.get("data") or ""})
    blocks.extend(_text_blocks(message.get("content"), f"messages[{i}].content"))
    if message.get("function_call"):
        raise TranslationError(f"messages[{i}]: the legacy function_call is not supported for "
                               "anthropic; use tool_calls", f"messages[{i}].function_call")
    for j, call in enumerate(message.get("tool_calls") or ()):
        param = f"messages[{i}].tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not call.get("id") or not function.get("name"):
            raise TranslationError(f"{param} needs id and function.name", param)
        blocks.append({"type": "tool_use", "id": call["id"], "name": function["name"],
                       "input": arguments_of(call, param)})
    return blocks


def _tool_result(message: dict[str, Any], i: int) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not call_id:
        raise TranslationError(f"messages[{i}]: a tool message needs tool_call_id",
                               f"messages[{i}].tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if isinstance(content, list):
        parts = _user_blocks(content, f"messages[{i}].content")
        if parts:
            block["content"] = parts
    elif isinstance(content, str) and content:
        block["content"] = content
    elif content not in (None, ""):
        raise TranslationError(f"messages[{i}].content must be a string or a list of parts",
                               f"messages[{i}].content")
    return block


def _has_tool_blocks(messages: list[dict[str, Any]]) -> bool:
    return any(isinstance(m["content"], list) and
               any(b["type"] in ("tool_use", "tool_result") for b in m["content"])
               for m in messages)


def _history_tool_names(messages: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for m in messages:
        for b in m["content"] if isinstance(m["content"], list) else ():
            if b["type"] == "tool_use" and b["name"] not in names:
                names.append(b["name"])
    return names or ["unavailable_tool"]


def _needs_thinking_history(messages: list[dict[str, Any]]) -> bool:
    """With thinking on, the last assistant turn, if it called tools, must start with its
    thinking block; a client that did not keep the block back cannot have thinking on."""
    for m in reversed(messages):
        if m["role"] == "assistant":
            blocks = m["content"] if isinstance(m["content"], list) else []
            calls = any(b["type"] == "tool_use" for b in blocks)
            thought = bool(blocks) and blocks[0]["type"] in ("thinking", "redacted_thinking")
            return calls and not thought
    return False


# -- parameters ----------------------------------------------------------------------------


def _max_tokens(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TranslationError(f"'{key}' must be a positive integer", key)
            return value
    return None


def _budget(effort: Any) -> int:
    if effort in NO_THINKING:
        return 0
    if effort not in THINKING_BUDGETS:
        raise TranslationError("reasoning_effort must be one of none, minimal, low, medium, high",
                               "reasoning_effort")
    return THINKING_BUDGETS[effort]


def _tools(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise TranslationError("'tools' must be a list", "tools")
    tools = []
    for j, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type", "function") != "function" \
                or not function.get("name"):
            raise TranslationError(f"tools[{j}] must be a function with a name", f"tools[{j}]")
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(schema, dict):
            raise TranslationError(f"tools[{j}].function.parameters must be an object",
                                   f"tools[{j}]")
        if "type" not in schema:
            schema = {"type": "object", **schema}
        out = {"name": function["name"], "input_schema": schema}
        if function.get("description"):
            out["description"] = function["description"]
        if tool.get("cache_control"):
            out["cache_control"] = tool["cache_control"]
        tools.append(out)
    return tools


def _tool_choice(choice: Any, parallel: Any, have_tools: bool) -> dict[str, Any] | None:
    if not have_tools:
        return None
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "none":
        out = {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) \
            and choice["function"].get("name"):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise TranslationError("tool_choice must be auto, none, required or "
                               '{"type": "function", "function": {"name": ...}}', "tool_choice")
    if parallel is False:
        out = out or {"type": "auto"}
        if out["type"] != "none":
            out["disable_parallel_tool_use"] = True
    return out
