"""Property tests: whatever JSON a client sends, the gateway answers 2xx or 4xx, never 5xx, and
no provider translator crashes on a body that passed the front-door check (issue 11, item 14).

(a) Bodies for /v1/chat/completions, /v1/completions and /v1/embeddings, mostly plausible
    with arbitrary JSON mixed in at every level, go through the real app in process (mock
    provider, limits active, a route condition reading the body).
(b) Bodies that pass the front-door check go straight into every translator's request
    building (anthropic, gemini, cohere, bedrock, azure, openai, mock): they build a request
    or refuse it with a 4xx, nothing else.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError, UpstreamError
from gateway.providers import bedrock, cohere, gemini
from gateway.providers.anthropic_translate import TranslationError, to_anthropic
from gateway.providers.azure import AzureOpenAIProvider
from gateway.providers.base import ClientPool, ProviderSpec, Timeouts, UpstreamRequest
from gateway.providers.mock import MockProvider
from gateway.providers.openai import OpenAIProvider
from gateway.server.request_shape import check_body

from ..server.inprocess import app_client

# Not traced for `make test`'s coverage: thousands of generated requests would take twice as
# long under the tracer, for lines the example-based tests cover too.
pytestmark = pytest.mark.no_cover

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# -- bodies ------------------------------------------------------------------------------------

INTS = st.integers(-2**63, 2**64 - 1)  # what orjson reads as ints (larger ones: floats)
SCALARS = (st.none() | st.booleans() | INTS
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
TEXT = st.text(max_size=30)
ROLES = st.sampled_from(["user", "assistant", "system", "developer", "tool", "function", "x"])
URLS = st.sampled_from(["https://127.0.0.1/cat.png", "data:image/png;base64,iVBORw0KGgo=",
                        "data:application/pdf;base64,JVBERi0=", "data:image/png;base64,@@",
                        "data:,hello", "s3://bucket/cat.jpg", "s3://bucket/x.bmp", "", "cat"])


def bodies(wild: bool):
    """Body strategies per endpoint: plausible values (odd ones included: unknown roles and
    part types, broken data URLs, strange schemas) and, when ``wild``, arbitrary JSON in place
    of any of them (the front door's tests want wrong types; the translators' tests want
    bodies that pass it)."""

    def maybe(plausible):
        return plausible | JSON if wild else plausible

    def obj(fixed=None, **optional):
        return st.fixed_dictionaries({k: maybe(v) for k, v in (fixed or {}).items()},
                                     optional={k: maybe(v) for k, v in optional.items()})

    def free(**optional):
        """An object the front door does not look into: any JSON in any field, always."""
        return st.fixed_dictionaries({}, optional={k: v | JSON for k, v in optional.items()})

    leaf = free(type=st.sampled_from(["object", "string", "integer", ["string", "null"], "array"]),
               required=st.lists(TEXT, max_size=2), const=JSON,
               **{"$ref": st.sampled_from(["#/properties/a", "#/nowhere", "http://x/y"])})
    odd = st.lists(JSON, min_size=1, max_size=2) | st.text(min_size=1, max_size=3) | INTS
    schema = st.recursive(leaf, lambda inner: free(
        type=st.just("object"),
        properties=st.dictionaries(st.text(max_size=5), inner, max_size=2) | odd,
        items=inner | odd, anyOf=st.lists(inner, max_size=2) | odd), max_leaves=4)
    part = obj(
        {"type": st.sampled_from(["text", "image_url", "file", "input_audio", "refusal", "x"])},
        text=TEXT, refusal=TEXT, image_url=URLS | obj({"url": URLS}, detail=TEXT),
        file=obj(file_data=URLS, filename=TEXT), input_audio=obj(data=TEXT, format=TEXT),
        cache_control=free(type=st.just("ephemeral")))
    arguments = st.sampled_from(["{}", '{"a": 1}', "[1]", "not json", ""]) | free(a=JSON)
    call = obj(id=st.sampled_from(["call_1", "call 2", "x" * 70, "call_1::sig"]),
               type=st.just("function"),
               function=obj(name=st.sampled_from(["f", "g"]), arguments=arguments))
    message = obj(
        {"role": ROLES}, content=TEXT | st.lists(part, max_size=3),
        tool_calls=st.lists(call, max_size=2), tool_call_id=st.sampled_from(["call_1", "zz"]),
        name=TEXT, reasoning_content=TEXT, function_call=obj(name=TEXT),
        thinking_blocks=st.lists(free(type=st.sampled_from(["thinking", "redacted_thinking"]),
                                     thinking=TEXT, signature=TEXT, data=TEXT), max_size=2))
    function = obj({"name": st.sampled_from(["f", "g"]), "parameters": schema},
                   description=TEXT, strict=st.booleans())
    tool = (obj({"type": st.just("function"), "function": function})
            | obj(type=st.sampled_from(["function", "web_search"]), function=function,
                  cache_control=free(type=st.just("ephemeral"))))
    generation = dict(
        stream=st.booleans(), max_tokens=st.integers(1, 5000),
        max_completion_tokens=st.integers(1, 5000), n=st.integers(1, 3),
        temperature=st.floats(-1, 3), top_p=st.floats(0, 1), seed=st.integers(-2**63, 2**63 - 1),
        presence_penalty=st.floats(-2, 2), frequency_penalty=st.floats(-2, 2),
        stop=TEXT | st.lists(TEXT, max_size=3), user=TEXT, metadata=free(a=TEXT),
        stream_options=obj(include_usage=st.booleans()), logit_bias=free(a=st.integers(-100, 100)))
    # Half the conversations are plain, so that translators get past the messages to the
    # tools, formats and parameters; the other half carry odd messages anywhere.
    words = st.text(min_size=1, max_size=20).filter(str.strip)
    plain = st.fixed_dictionaries({
        "role": st.sampled_from(["user", "assistant", "system"]),
        "content": words | st.lists(st.fixed_dictionaries(
            {"type": st.just("text"), "text": words}), min_size=1, max_size=2)})
    question = st.fixed_dictionaries({"role": st.just("user"), "content": words})
    conversation = (st.tuples(st.lists(plain, max_size=2), question).map(lambda t: [*t[0], t[1]])
                    | st.lists(plain | message, min_size=1, max_size=4))
    chat = obj(
        {"model": st.just("chat"), "messages": conversation},
        **generation, tools=st.lists(tool, max_size=2),
        tool_choice=st.sampled_from(["auto", "none", "required", "any"])
        | obj(type=st.just("function"), function=obj(name=st.sampled_from(["f", "h"]))),
        parallel_tool_calls=st.booleans(),
        response_format=obj({"type": st.sampled_from(["text", "json_object", "json_schema",
                                                       "xml"])},
                            json_schema=obj(name=TEXT, schema=schema, strict=st.booleans())),
        reasoning_effort=st.sampled_from(["none", "minimal", "low", "medium", "high", "max"]),
        thinking=free(type=st.sampled_from(["enabled", "disabled"]),
                     budget_tokens=st.integers(0, 5000)),
        top_k=st.integers(0, 50))
    tokens = (TEXT | st.lists(TEXT, max_size=3) | st.lists(st.integers(0, 50000), max_size=4)
              | st.lists(st.lists(st.integers(0, 50000), max_size=3), max_size=2))
    completions = obj({"model": st.just("chat"), "prompt": tokens}, **generation,
                      suffix=TEXT, echo=st.booleans(), best_of=st.integers(1, 3))
    embeddings = obj({"model": st.just("chat"), "input": tokens},
                     dimensions=st.integers(1, 100), encoding_format=st.sampled_from(
                         ["float", "base64"]), user=TEXT, input_type=TEXT, task_type=TEXT,
                     truncate=st.sampled_from(["NONE", "END"]))
    return {"chat": chat, "completions": completions, "embeddings": embeddings}


WILD = bodies(wild=True)
VALID = bodies(wild=False)
KEYS = st.sampled_from(["text", "content", "role", "type", "image_url", "url", "name", "id",
                        "tool_calls", "function", "arguments", "parameters", "properties",
                        "stream_options", "include_usage", "max_tokens", "n", "stop",
                        "input", "prompt", "dimensions"]) | st.text(max_size=6)


def _slots(value, out: list) -> list:
    """Every (container, key) of a JSON value, and every dict (to add a key to)."""
    if isinstance(value, dict):
        out.append((value, None))
        for key, item in value.items():
            out.append((value, key))
            _slots(item, out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.append((value, i))
            _slots(item, out)
    return out


@st.composite
def mutated(draw, valid):
    """A valid body with one thing wrong anywhere: a value replaced by arbitrary JSON, or a
    key added to some object (a ``text`` of 5 on an image part, say)."""
    body = draw(valid)
    container, key = draw(st.sampled_from(_slots(body, [])))
    container[draw(KEYS) if key is None else key] = draw(JSON)
    return body

# -- (a) the real app in process ---------------------------------------------------------------

CONFIG = """
version: 1
providers:
  demo: {type: mock}
routes:
  chat:
    limits: {requests_per_minute: 1000000, tokens_per_minute: 1000000000000}
    conditional:
      rules:
        - when: {params.temperature: {$gt: 1}, params.user: {$regex: "^a"}}
          then: {target: {provider: demo, model: hot}}
      default: {target: {provider: demo, model: m}}
"""

PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions",
         "embeddings": "/v1/embeddings"}


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def client(loop, tmp_path_factory):
    context = app_client(CONFIG, tmp_path_factory.mktemp("props"))
    client = loop.run_until_complete(context.__aenter__())
    yield client
    loop.run_until_complete(context.__aexit__(None, None, None))


def answer(loop, client, endpoint: str, body) -> tuple[int, bytes]:
    async def post():
        async with client.stream("POST", PATHS[endpoint], content=orjson.dumps(body),
                                 headers={"content-type": "application/json"}) as reply:
            return reply.status_code, await reply.aread()

    return loop.run_until_complete(post())


def assert_no_server_error(status: int, content: bytes) -> None:
    assert status < 500, content[:500]
    if status >= 400:
        error = orjson.loads(content)["error"]
        assert error["message"] and error["type"]
    elif b"data: " in content:
        assert b'"error"' not in content, content[-500:]


@pytest.mark.parametrize("endpoint", sorted(PATHS))
def test_any_json_body_is_answered_2xx_or_4xx(loop, client, endpoint):
    """Arbitrary JSON-ish bodies (and well-formed ones with arbitrary values mixed in) never
    give a 5xx, through the limits, a body condition and the mock provider."""
    @SETTINGS
    @given(body=mutated(VALID[endpoint]) | WILD[endpoint] | JSON)
    def run(body):
        assert_no_server_error(*answer(loop, client, endpoint, body))

    run()


def test_valid_bodies_mostly_succeed(loop, client):
    """The strategies are not all refusals: well-typed chat bodies get through."""
    statuses = []

    @SETTINGS
    @given(body=VALID["chat"])
    def run(body):
        status, content = answer(loop, client, "chat", body)
        assert_no_server_error(status, content)
        statuses.append(status)

    run()
    assert statuses.count(200) > len(statuses) // 4, statuses


# -- (b) every translator ----------------------------------------------------------------------

def spec(kind: str, **options) -> ProviderSpec:
    return ProviderSpec(name=kind, type=kind, base_url="http://127.0.0.1:9", api_key="k",
                        headers={}, max_connections=4, options=options)


TIMEOUTS = Timeouts(1, 1, 1, 1)
AZURE = AzureOpenAIProvider(spec("azure-openai", api_version="2024-10-21"), ClientPool())
OPENAI = OpenAIProvider(spec("openai"), ClientPool())
MOCK = MockProvider(spec("mock"), ClientPool())


async def _mock(endpoint: str, body: dict) -> None:
    response = await MOCK.send(UpstreamRequest(endpoint, body, bool(body.get("stream")),
                                               TIMEOUTS))
    if response.stream is not None:
        async for _ in response.stream:
            pass


TRANSLATORS = {
    "anthropic": {"chat": lambda b: to_anthropic(b, stream=bool(b.get("stream"))).body},
    "gemini": {"chat": gemini.to_gemini, "embeddings": lambda b: gemini.to_embed_request(b, "m")},
    "cohere": {"chat": lambda b: cohere.to_cohere(b, bool(b.get("stream"))),
               "embeddings": cohere.to_embed_request},
    "bedrock": {"chat": bedrock.to_bedrock},
    "azure": {e: lambda b, e=e: (AZURE.url(e, str(b.get("model"))), b) for e in PATHS},
    "openai": {e: lambda b, e=e: (OPENAI._urls[e], b) for e in PATHS},
    "mock": {e: lambda b, e=e: asyncio.run(_mock(e, b)) for e in PATHS},  # answers: None
}
CASES = [(name, endpoint) for name, table in TRANSLATORS.items() for endpoint in table]


@pytest.mark.parametrize("provider, endpoint", CASES)
def test_translators_build_or_refuse_with_4xx(provider, endpoint):
    """A body the front door let through is translated, or refused with a 4xx error value,
    never another exception."""
    translate = TRANSLATORS[provider][endpoint]

    @SETTINGS
    @given(body=VALID[endpoint])
    def run(body):
        try:
            check_body(body, endpoint)
        except GatewayError:
            assume(False)
        try:
            built = translate(body)
            orjson.dumps(built)  # what is sent must also serialize
        except TranslationError:
            pass
        except UpstreamError as err:
            assert 400 <= err.status < 500 and err.error_class == "client", err.message

    run()
