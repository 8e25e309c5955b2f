"""Property tests of the other front doors: whatever JSON a client sends to /v1/messages,
/v1/messages/count_tokens, /v1/rerank or /v1/moderations, the gateway answers 2xx or 4xx in
the door's own error shape, never 5xx, streamed or not (the translation to chat and back runs
on every body: the route's target is the mock provider,
through test_request_properties' app)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from .test_request_properties import JSON, SETTINGS, TEXT, client, loop, mutated  # noqa: F401

pytestmark = pytest.mark.no_cover

WORDS = st.text(min_size=1, max_size=20).filter(str.strip)


def _obj(fixed=None, **optional):
    return st.fixed_dictionaries(dict(fixed or {}), optional=optional)


SOURCE = (_obj({"type": st.just("base64"), "media_type": st.sampled_from(
               ["image/png", "image/jpeg", "application/pdf", "text/plain", "x"]),
               "data": st.sampled_from(["iVBORw0KGgo=", "@@", ""])})
          | _obj({"type": st.just("url"), "url": st.sampled_from(["https://127.0.0.1/a.png", "", "x"])})
          | _obj({"type": st.sampled_from(["text", "file", "content"])}, data=TEXT, file_id=TEXT))
BLOCK = (
    _obj({"type": st.just("text"), "text": WORDS}, cache_control=_obj({"type": st.just("ephemeral")}))
    | _obj({"type": st.sampled_from(["image", "document"]), "source": SOURCE}, title=TEXT)
    | _obj({"type": st.just("tool_use"), "id": st.sampled_from(["toolu_1", "t 2", ""]),
            "name": st.sampled_from(["f", "g"]), "input": JSON})
    | _obj({"type": st.just("tool_result"), "tool_use_id": st.sampled_from(["toolu_1", "zz"])},
           content=TEXT | st.lists(_obj({"type": st.just("text"), "text": WORDS}), max_size=2),
           is_error=st.booleans())
    | _obj({"type": st.sampled_from(["thinking", "redacted_thinking"])},
           thinking=TEXT, signature=TEXT, data=TEXT)
    | _obj({"type": st.sampled_from(["server_tool_use", "x", "search_result"])}))
MESSAGE = _obj({"role": st.sampled_from(["user", "assistant", "system", "x"]),
                "content": WORDS | st.lists(BLOCK, max_size=3)})
TOOL = (_obj({"name": st.sampled_from(["f", "g"]),
              "input_schema": _obj({"type": st.just("object")}, properties=JSON)},
             description=TEXT)
        | _obj({"type": st.sampled_from(["web_search_20250305", "bash_20250124", "custom"]),
                "name": TEXT}))
MESSAGES = _obj(
    {"model": st.just("chat"), "max_tokens": st.integers(1, 5000),
     "messages": st.lists(MESSAGE, min_size=1, max_size=4)},
    system=TEXT | st.lists(_obj({"type": st.just("text"), "text": WORDS}), max_size=2),
    stream=st.booleans(), temperature=st.floats(0, 1), top_p=st.floats(0, 1),
    top_k=st.integers(0, 50), stop_sequences=st.lists(TEXT, max_size=2),
    tools=st.lists(TOOL, max_size=2),
    tool_choice=_obj({"type": st.sampled_from(["auto", "any", "tool", "none", "x"])},
                     name=st.sampled_from(["f", "h"]), disable_parallel_tool_use=st.booleans()),
    thinking=_obj({"type": st.sampled_from(["enabled", "disabled", "adaptive"])},
                  budget_tokens=st.integers(0, 5000)),
    metadata=_obj(user_id=TEXT))
RERANK = _obj({"model": st.just("chat"), "query": TEXT,
               "documents": st.lists(TEXT | _obj({"text": TEXT}, title=TEXT), max_size=4)},
              top_n=st.integers(-1, 5), return_documents=st.booleans())
MODERATIONS = _obj({"input": TEXT | st.lists(TEXT | _obj({"type": st.just("text"), "text": TEXT}),
                                             max_size=3)}, model=st.just("chat"))
BODIES = {"/v1/messages": MESSAGES, "/v1/messages/count_tokens": MESSAGES,
          "/v1/rerank": RERANK, "/v1/moderations": MODERATIONS}


def post(loop, client, path: str, body) -> tuple[int, bytes]:
    async def send():
        async with client.stream("POST", path, content=orjson.dumps(body),
                                 headers={"content-type": "application/json"}) as reply:
            return reply.status_code, await reply.aread()

    return loop.run_until_complete(send())


@pytest.mark.parametrize("path", sorted(BODIES))
def test_any_json_body_is_answered_2xx_or_4xx(loop, client, path):  # noqa: F811
    @SETTINGS
    @given(body=mutated(BODIES[path]) | BODIES[path] | JSON)
    def run(body):
        status, content = post(loop, client, path, body)
        assert status < 500, content[:500]
        if status >= 400:
            error = orjson.loads(content)["error"]
            assert error["message"] and error["type"], content[:500]
        elif b"event: error" in content or b'"type":"error"' in content:
            raise AssertionError(content[-500:])

    run()
