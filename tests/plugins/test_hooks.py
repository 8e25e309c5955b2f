"""One test per hook spec, each calling the hook through a real plugin installed by entry
point (tests/plugins/tiny), against the real app in process. The meta-test at the end keeps
it so: a hook added to gateway/hookspecs.py without a `test_hook_<name>` here fails."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway import hookspecs
from gateway.cli import main
from gateway.config.compiler import compile_bytes
from gateway.errors import ConfigErrors

from ..server.inprocess import app_client

TOKEN = "admin-secret"
BASE = f"""
version: 1
server: {{admin_token: {TOKEN}}}
providers:
  p: {{type: mock}}
  q: {{type: mock}}
routes:
  a:
    fallback:
      targets:
        - target: {{provider: p, model: m1}}
        - route: b
  b: {{target: {{provider: q, model: m2}}}}
"""
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def with_plugins(plugins: str) -> str:
    return BASE + "plugins:\n" + plugins


def chat(model: str = "a", content: str = "hello", **headers: str) -> dict:
    return {"json": {"model": model, "messages": [{"role": "user", "content": content}]},
            "headers": headers}


def answer_text(response) -> str:
    return response.json()["choices"][0]["message"]["content"]


def test_hook_plugin_config_schema():
    """A config that breaks the plugin's schema is an error at its line and column."""
    text = with_plugins("  - name: test-ops\n    config: {ready: maybe}\n")
    with pytest.raises(ConfigErrors) as info:
        compile_bytes(text.encode(), "g.yaml")
    (err,) = info.value.errors
    assert err.path == "$.plugins[0].config.ready" and err.line == 16


async def test_hook_request_middleware(tmp_path: Path):
    """The request middleware changes the message the upstream sees."""
    config = with_plugins("  - name: test-stamp\n    config: {value: s, prefix: STAMPED}\n")
    async with app_client(config, tmp_path) as client:
        r = await client.post("/v1/chat/completions", **chat(model="b"))
    assert r.status_code == 200, r.text
    assert "STAMPED hello" in answer_text(r)


async def test_hook_response_middleware(tmp_path: Path):
    """Response middleware runs in reverse list order and its headers reach the client."""
    config = with_plugins("  - name: test-stamp\n    config: {value: one}\n"
                          "  - name: test-stamp-2\n    config: {value: two}\n")
    async with app_client(config, tmp_path) as client:
        r = await client.post("/v1/chat/completions", **chat(model="b"))
    assert r.headers["x-test-stamp"] == "two,one"


async def test_hook_response_headers(tmp_path: Path):
    """A plugin's headers reach whole and streamed answers; the gateway's own win."""
    async with app_client(with_plugins("  - name: test-ops\n"), tmp_path) as client:
        whole = await client.post("/v1/chat/completions", **chat(model="b"))
        body = chat(model="b")
        body["json"]["stream"] = True
        streamed = await client.post("/v1/chat/completions", **body)
    for answer in (whole, streamed):
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-gateway-test-ops"] == "b via q/m2"
        assert answer.headers["x-gateway-route"] == "b"
    assert "data: [DONE]" in streamed.text


async def test_hook_attempt_check(tmp_path: Path):
    """A refused answer makes the fallback move on to its next target."""
    config = with_plugins("  - name: test-reject\n    config: {model: m1}\n")
    async with app_client(config, tmp_path) as client:
        r = await client.post("/v1/chat/completions", **chat())
    assert r.status_code == 200, r.text
    assert r.headers["x-gateway-target"] == "q/m2"
    assert r.headers["x-gateway-attempts"] == "2"


def test_hook_register_commands(capsys):
    """A plugin's subcommand runs from the `gateway` command."""
    assert main(["test-hello", "world"]) == 0
    assert capsys.readouterr().out == "hello world\n"


async def test_hook_register_providers(tmp_path: Path):
    """A provider type from a plugin serves a route like a built-in one."""
    config = BASE.replace("q: {type: mock}", "q: {type: test-echo}")
    async with app_client(config, tmp_path) as client:
        r = await client.post("/v1/chat/completions", **chat(model="b", content="abc"))
    assert r.status_code == 200, r.text
    assert answer_text(r) == "cba"


async def test_hook_authenticator(tmp_path: Path):
    """A listed plugin's authenticator replaces the built-in one: the server asks it who is
    calling, before routing and for /v1/models, and the keys it returns limit the routes."""
    config = with_plugins("  - name: test-ops\n    config: {auth: true, allow: [b]}\n")
    async with app_client(config, tmp_path) as client:
        anonymous = await client.post("/v1/chat/completions", **chat(model="b"))
        allowed = await client.post("/v1/chat/completions", **chat(model="b", **{"x-test-user": "ann"}))
        forbidden = await client.post("/v1/chat/completions", **chat(model="a", **{"x-test-user": "ann"}))
        models = await client.get("/v1/models", headers={"x-test-user": "ann"})
        graph = client.reloader.holder.current
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "test_no_user"
    assert allowed.status_code == 200, allowed.text
    assert forbidden.status_code == 403
    assert [m["id"] for m in models.json()["data"]] == ["b"]
    assert graph.requires_key  # a gateway may listen beyond loopback with it


async def test_a_plugin_authenticator_replaces_the_virtual_keys(tmp_path: Path):
    """With a listed plugin's authenticator, the keys: of the config no longer decide: a
    caller it lets in without a key is served."""
    digest = "0" * 64
    config = (BASE + f"keys:\n  team: {{key_sha256: '{digest}'}}\n" + "plugins:\n"
              "  - name: test-ops\n    config: {auth: true, anonymous: true}\n")
    async with app_client(config, tmp_path) as client:
        r = await client.post("/v1/chat/completions", **chat(model="b"))
    assert r.status_code == 200, r.text


def test_two_authenticators_are_a_config_error():
    """Two listed plugins may not both authenticate callers."""
    text = with_plugins("  - name: test-ops\n    config: {auth: true}\n"
                        "  - name: test-ops-2\n    config: {auth: true}\n")
    with pytest.raises(ConfigErrors) as info:
        compile_bytes(text.encode(), "g.yaml")
    (err,) = info.value.errors
    assert err.path == "$.plugins[1]"
    assert "plugin 'test-ops-2' authenticates callers, and so does plugin 'test-ops'" in err.message


async def test_hook_admin_routes(tmp_path: Path):
    """Admin routes from a plugin are served under /admin behind the admin token, see the
    compiled routes' targets (route references followed), and leave with the plugin."""
    config = with_plugins("  - name: test-ops\n")
    async with app_client(config, tmp_path) as client:
        denied = await client.get("/admin/test-ops/targets")
        r = await client.get("/admin/test-ops/targets", headers=ADMIN)
        (tmp_path / "gateway.yaml").write_text(BASE)
        assert (await client.reloader.reload()).outcome == "applied"
        gone = await client.get("/admin/test-ops/targets", headers=ADMIN)
    assert denied.status_code == 401
    assert r.status_code == 200, r.text
    assert r.json() == {"plugin": "test-ops", "targets": {"a": ["p/m1", "q/m2"], "b": ["q/m2"]}}
    assert gone.status_code == 404


async def test_hook_api_routes(tmp_path: Path):
    """API routes from a plugin are served at the root: under /v1/ only to an identified
    caller (the key handed on in the scope), elsewhere as they are; they leave with the plugin
    and the server's own routes still win."""
    config = with_plugins("  - name: test-ops\n    config: {auth: true}\n")
    async with app_client(config, tmp_path) as client:
        anonymous = await client.get("/v1/test-ops/whoami")
        named = await client.get("/v1/test-ops/whoami", headers={"x-test-user": "ann"})
        page = await client.get("/test-ops/page")
        models = await client.get("/v1/models", headers={"x-test-user": "ann"})
        (tmp_path / "gateway.yaml").write_text(BASE)
        assert (await client.reloader.reload()).outcome == "applied"
        gone = await client.get("/v1/test-ops/whoami", headers={"x-test-user": "ann"})
        unknown = await client.get("/nowhere")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "test_no_user"
    assert named.status_code == 200 and named.json() == {"plugin": "test-ops", "key": "ann"}
    assert page.status_code == 200 and page.json() == {"page": "open"}
    assert models.status_code == 200 and models.json()["object"] == "list"
    assert gone.status_code == 404 and unknown.status_code == 404


async def test_hook_readiness_check(tmp_path: Path):
    """A plugin's check appears in /readyz under its name; not ready makes it a 503."""
    (tmp_path / "up").mkdir()
    (tmp_path / "down").mkdir()
    async with app_client(with_plugins("  - name: test-ops\n"), tmp_path / "up") as client:
        ready = await client.get("/readyz")
    async with app_client(with_plugins("  - name: test-ops\n    config: {ready: false}\n"),
                          tmp_path / "down") as client:
        not_ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["test-ops"] == {"ready": True}
    assert not_ready.status_code == 503
    assert not_ready.json()["reason"] == "test-ops says not ready"


async def test_hook_metrics_collector(tmp_path: Path):
    """A plugin's metric families are in /metrics."""
    async with app_client(with_plugins("  - name: test-ops\n"), tmp_path) as client:
        r = await client.get("/metrics", headers=ADMIN)
    assert r.status_code == 200
    assert "\ntest_ops_routes 2.0\n" in r.text


async def test_hook_request_finished(tmp_path: Path):
    """Each request's record reaches the plugin once it is over, whole or streamed, with
    every attempt (a fallback's failed one included), tokens, cost and the config version."""
    from gateway_test_plugins.ops import FINISHED

    config = with_plugins("  - name: test-ops\n").replace(
        "p: {type: mock}", "p: {type: mock, error_rate: 1, error_status: 503}")
    config += ("pricing:\n  q/m2: {input: 1000000, output: 2000000}\n"
               "defaults: {retry: {attempts: 2, base: 1ms, jitter: false}}\n")
    FINISHED.clear()
    async with app_client(config, tmp_path) as client:
        parent = f"00-{'ab' * 16}-{'cd' * 8}-01"
        whole = await client.post("/v1/chat/completions",
                                  **chat(content="one two three", traceparent=parent))
        body = chat(model="b")
        body["json"]["stream"] = True
        streamed = await client.post("/v1/chat/completions", **body)
        missing = await client.post("/v1/chat/completions", **chat(model="nope"))
    assert (whole.status_code, streamed.status_code, missing.status_code) == (200, 200, 404)
    first, second, third = FINISHED
    assert first.request_id == whole.headers["x-request-id"] and first.trace_id == "ab" * 16
    assert (first.route, first.target, first.status, first.stream) == ("a", "q/m2", 200, False)
    assert [(a.target, a.status, a.error_class) for a in first.attempts] == [
        ("p/m1", 503, "server"), ("p/m1", 503, "server"), ("q/m2", 200, None)]
    assert (first.retries, first.fallbacks, first.config_version) == (1, 1, 1)
    assert first.tokens_in == whole.json()["usage"]["prompt_tokens"]
    assert first.cost_usd == first.tokens_in + 2 * first.tokens_out
    assert first.latency_ms >= first.ttfb_ms > 0 and first.request_body is None
    assert second.stream and second.status == 200 and second.tokens_out > 0
    assert second.ttfb_ms is not None and second.latency_ms >= second.ttfb_ms
    assert len(second.trace_id) == 32 and second.trace_id != first.trace_id
    assert (third.status, third.route, third.attempts, third.tokens_in) == (404, "", (), None)
    assert "does not exist" in third.error


async def test_request_finished_bodies_only_when_asked_and_failures_stay_inside(tmp_path: Path):
    """A function with wants_bodies gets the request's JSON and the answer's bytes, streamed
    ones too; a function that raises is logged and the client still gets its answer."""
    from gateway_test_plugins.ops import FINISHED

    FINISHED.clear()
    config = with_plugins("  - name: test-ops\n    config: {bodies: true}\n"
                          "  - name: test-ops-2\n    config: {finish: raise}\n")
    with capture_logs() as logs:
        async with app_client(config, tmp_path) as client:
            whole = await client.post("/v1/chat/completions", **chat(model="b", content="abc"))
            body = chat(model="b", content="xyz")
            body["json"]["stream"] = True
            streamed = await client.post("/v1/chat/completions", **body)
    assert whole.status_code == streamed.status_code == 200
    first, second = FINISHED
    assert first.request_body["messages"][0]["content"] == "abc"
    assert first.response_body == whole.content
    assert second.request_body["messages"][0]["content"] == "xyz"
    assert second.response_body == streamed.content
    failed = [e for e in logs if e["event"] == "plugin_failed"]
    assert [e["plugin"] for e in failed] == ["test-ops-2", "test-ops-2"]


def test_hook_background_task(gateway_app, tmp_path: Path):
    """A plugin's background task runs once the server starts, and its request goes through
    the graph by the dispatcher; a reload that returns the same object leaves it running, one
    without the plugin stops it."""
    from gateway_test_plugins.ops import TASK_RUNS

    from ..inprocess_gateway import poll

    TASK_RUNS.clear()
    config = with_plugins("  - name: test-ops\n    config: {task: true}\n")
    gw = gateway_app(config)
    (event, status, answer), = poll(lambda: list(TASK_RUNS), bool, 5, "the task did not run")
    assert (event, status) == ("answered", 200)
    assert answer["choices"][0]["message"]["content"]
    (tmp_path / "gateway.yaml").write_text(config + "  # edited\n")
    assert gw.post("/admin/reload?force=1", headers=ADMIN).json()["result"] == "applied"
    assert [e[0] for e in TASK_RUNS] == ["answered"]
    (tmp_path / "gateway.yaml").write_text(BASE)
    assert gw.post("/admin/reload", headers=ADMIN).json()["result"] == "applied"
    poll(lambda: [e[0] for e in TASK_RUNS], lambda e: e == ["answered", "stopped"], 5,
         "the task was not stopped")


def test_every_hook_has_a_test():
    """Every hook spec has a test_hook_<name> in tests/plugins/."""
    specs = {name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(fn, "gateway_spec")}
    tested = {node.name.removeprefix("test_hook_")
              for path in Path(__file__).parent.glob("test_*.py")
              for node in ast.walk(ast.parse(path.read_text()))
              if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
              and node.name.startswith("test_hook_")}
    assert sorted(specs - tested) == []

