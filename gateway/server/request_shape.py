"""The shape of a request body, checked once at the front door.

Everything after this point (middleware, plugins, routing conditions, provider translators)
reads request fields as OpenAI defines them; a field of the wrong type used to surface as a
TypeError deep inside one of them, a 500. Here every field the gateway or a translator reads
is checked for its type, and a mismatch is a 400 in OpenAI's words and shape, with ``param``
naming the field path (``messages[2].content[0].text``). Fields nobody reads pass through
unchecked; values that have the right type but that a provider cannot take are for its
translator to refuse.

Hand-written checks, not JSON Schema: this runs on every request, and a typical chat body
costs a few dict lookups.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import GatewayError

Check = Callable[[Any, str], None]

MAX_CHOICES = 128  # OpenAI's limit on n
MAX_COUNT = 2**31 - 1  # token counts and dimensions: past this, sums overflow 64-bit stores
# Fields every endpoint requires, besides "model".
REQUIRED = {"chat": "messages", "completions": "prompt", "embeddings": "input",
            "images": "prompt", "speech": "input"}


def check_body(body: dict, endpoint: str) -> None:
    """Raise GatewayError(400) naming the first field of ``body`` that is missing or has the
    wrong type."""
    required = REQUIRED.get(endpoint)
    if required is not None and body.get(required) is None:
        raise _missing(required)
    fields = _FIELDS.get(endpoint)
    if fields is None:
        return
    for name, value in body.items():  # a body has few keys; the table has many
        check = fields.get(name)
        if check is not None and value is not None:
            check(value, name)


# -- errors ------------------------------------------------------------------------------------

def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _wrong(path: str, expected: str, value: Any) -> GatewayError:
    return GatewayError(400, f"Invalid type for '{path}': expected {expected}, but got "
                        f"{_kind(value)} instead.", code="invalid_type", param=path)


def _missing(path: str) -> GatewayError:
    return GatewayError(400, f"Missing required parameter: '{path}'.",
                        code="missing_required_parameter", param=path)


def _out_of_range(path: str, rule: str, value: Any) -> GatewayError:
    return GatewayError(400, f"Invalid '{path}': expected {rule}, but got {value} instead.",
                        code="invalid_value", param=path)


# -- scalars -----------------------------------------------------------------------------------

def _string(value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise _wrong(path, "a string", value)


def _boolean(value: Any, path: str) -> None:
    if not isinstance(value, bool):
        raise _wrong(path, "a boolean", value)


def _number(value: Any, path: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _wrong(path, "a number", value)


def _integer(value: Any, path: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _wrong(path, "an integer", value)


def _positive(value: Any, path: str) -> None:
    _integer(value, path)
    if value < 1:
        raise _out_of_range(path, "an integer >= 1", value)
    if value > MAX_COUNT:
        raise _out_of_range(path, f"an integer <= {MAX_COUNT}", value)


def _choices(value: Any, path: str) -> None:
    _positive(value, path)
    if value > MAX_CHOICES:
        raise _out_of_range(path, f"an integer <= {MAX_CHOICES}", value)


def _object(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise _wrong(path, "an object", value)


def _array(value: Any, path: str) -> None:
    if not isinstance(value, list):
        raise _wrong(path, "an array", value)


def _fields(value: dict, path: str, fields: tuple[tuple[str, Check], ...]) -> None:
    """The optional ``fields`` of an object, each checked when present and not null."""
    for name, check in fields:
        item = value.get(name)
        if item is not None:
            check(item, f"{path}.{name}")


def _required(value: dict, path: str, name: str, check: Check) -> None:
    item = value.get(name)
    if item is None:
        raise _missing(f"{path}.{name}")
    check(item, f"{path}.{name}")


# -- composite fields --------------------------------------------------------------------------

def _stop(value: Any, path: str) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise _wrong(path, "a string or an array of strings", value)
    for i, item in enumerate(value):
        _string(item, f"{path}[{i}]")


def _stream_options(value: Any, path: str) -> None:
    _object(value, path)
    _fields(value, path, (("include_usage", _boolean),))


def _token_input(value: Any, path: str) -> None:
    """A string, or an array of strings, of token ids, or of arrays of token ids (the
    ``input`` of embeddings and the ``prompt`` of completions)."""
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise _wrong(path, "a string or an array", value)
    if not value:
        return
    first = value[0]
    check = _string if isinstance(first, str) else _token_ids if isinstance(first, list) \
        else _integer  # every item must be of the first item's kind
    for i, item in enumerate(value):
        check(item, f"{path}[{i}]")


def _token_ids(value: Any, path: str) -> None:
    _array(value, path)
    for i, item in enumerate(value):
        _integer(item, f"{path}[{i}]")


# -- messages ----------------------------------------------------------------------------------

def _messages(value: Any, path: str) -> None:
    _array(value, path)
    for i, message in enumerate(value):
        # the common message, {"role": str, "content": str}, costs two lookups
        if isinstance(message, dict) and isinstance(message.get("role"), str) \
                and isinstance(message.get("content"), str) and len(message) == 2:
            continue
        _message(message, f"{path}[{i}]")


def _message(message: Any, path: str) -> None:
    if not isinstance(message, dict):
        raise _wrong(path, "an object", message)
    _required(message, path, "role", _string)
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        _parts(content, f"{path}.content")
    if len(message) > 1 + ("content" in message):  # anything beyond role and content
        _fields(message, path, _MESSAGE_FIELDS)


def _parts(value: Any, path: str) -> None:
    if not isinstance(value, list):
        raise _wrong(path, "a string or an array of content parts", value)
    for i, part in enumerate(value):
        if isinstance(part, dict) and part.get("type") == "text" \
                and isinstance(part.get("text"), str) and len(part) == 2:
            continue  # the common part costs two lookups
        here = f"{path}[{i}]"
        if not isinstance(part, dict):
            raise _wrong(here, "an object", part)
        _required(part, here, "type", _string)
        kind = part["type"]
        if kind in _PART_FIELDS:
            name, check = _PART_FIELDS[kind]
            _required(part, here, name, check)
        if "text" in part:  # read from parts of any type (token estimates, the mock, plugins)
            _fields(part, here, (("text", _string),))
        if "cache_control" in part:
            _fields(part, here, (("cache_control", _object),))


def _image_url(value: Any, path: str) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, dict):
        raise _wrong(path, "an object", value)
    _required(value, path, "url", _string)
    _fields(value, path, (("detail", _string),))


def _file(value: Any, path: str) -> None:
    _object(value, path)
    _fields(value, path, (("file_data", _string), ("file_id", _string), ("filename", _string)))


def _input_audio(value: Any, path: str) -> None:
    _object(value, path)
    _fields(value, path, (("data", _string), ("format", _string)))


_PART_FIELDS: dict[str, tuple[str, Check]] = {
    "text": ("text", _string),
    "refusal": ("refusal", _string),
    "image_url": ("image_url", _image_url),
    "input_audio": ("input_audio", _input_audio),
    "file": ("file", _file),
}


def _tool_calls(value: Any, path: str) -> None:
    _array(value, path)
    for i, call in enumerate(value):
        here = f"{path}[{i}]"
        _object(call, here)
        _fields(call, here, (("id", _string), ("type", _string), ("function", _function_call)))


def _function_call(value: Any, path: str) -> None:
    _object(value, path)
    _fields(value, path, (("name", _string), ("arguments", _arguments)))


def _arguments(value: Any, path: str) -> None:
    if not isinstance(value, (str, dict)):
        raise _wrong(path, "a string of JSON", value)


def _objects(value: Any, path: str) -> None:
    _array(value, path)
    for i, item in enumerate(value):
        _object(item, f"{path}[{i}]")


_MESSAGE_FIELDS: tuple[tuple[str, Check], ...] = (
    ("name", _string), ("tool_call_id", _string), ("tool_calls", _tool_calls),
    ("function_call", _function_call), ("reasoning_content", _string),
    ("thinking_blocks", _objects), ("refusal", _string),
)


# -- tools and formats -------------------------------------------------------------------------

def _tools(value: Any, path: str) -> None:
    _array(value, path)
    for i, tool in enumerate(value):
        here = f"{path}[{i}]"
        _object(tool, here)
        _fields(tool, here, (("type", _string), ("function", _function),
                             ("cache_control", _object)))


def _function(value: Any, path: str) -> None:
    _object(value, path)
    _required(value, path, "name", _string)
    _fields(value, path, (("description", _string), ("parameters", _object),
                          ("strict", _boolean)))


def _tool_choice(value: Any, path: str) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, dict):
        raise _wrong(path, "a string or an object", value)
    _fields(value, path, (("type", _string), ("function", _named)))


def _named(value: Any, path: str) -> None:
    _object(value, path)
    _fields(value, path, (("name", _string),))


def _response_format(value: Any, path: str) -> None:
    _object(value, path)
    _required(value, path, "type", _string)
    _fields(value, path, (("json_schema", _json_schema),))


def _json_schema(value: Any, path: str) -> None:
    _object(value, path)
    _fields(value, path, (("name", _string), ("schema", _object), ("strict", _boolean),
                          ("description", _string)))


# -- endpoints ---------------------------------------------------------------------------------

_GENERATION: tuple[tuple[str, Check], ...] = (
    ("max_tokens", _positive), ("max_completion_tokens", _positive), ("n", _choices),
    ("temperature", _number), ("top_p", _number), ("presence_penalty", _number),
    ("frequency_penalty", _number), ("seed", _integer), ("stop", _stop),
    ("stream_options", _stream_options), ("user", _string), ("metadata", _object),
    ("logit_bias", _object),
)

_FIELDS: dict[str, dict[str, Check]] = {name: dict(fields) for name, fields in {
    "chat": (("messages", _messages), *_GENERATION, ("tools", _tools),
             ("tool_choice", _tool_choice), ("parallel_tool_calls", _boolean),
             ("response_format", _response_format), ("reasoning_effort", _string),
             ("thinking", _object), ("top_k", _number)),
    "completions": (("prompt", _token_input), *_GENERATION, ("suffix", _string),
                    ("echo", _boolean), ("best_of", _positive)),
    "embeddings": (("input", _token_input), ("dimensions", _positive),
                   ("encoding_format", _string), ("user", _string), ("input_type", _string),
                   ("task_type", _string), ("truncate", _string)),
    "images": (("prompt", _string), ("n", _choices), ("size", _string), ("quality", _string),
               ("style", _string), ("response_format", _string), ("user", _string)),
    "speech": (("input", _string), ("voice", _string), ("response_format", _string),
               ("speed", _number), ("instructions", _string)),
}.items()}
