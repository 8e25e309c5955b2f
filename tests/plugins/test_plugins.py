"""The plugin interface end to end, with tiny plugins installed into the test venv as a real
distribution (tests/plugins/tiny): discovery through entry points, config validation with
positions, order, failures, and hot reload that adds and removes plugins under traffic."""

from __future__ import annotations

import time
from importlib.metadata import entry_points

import httpx
import openai
import pytest

from gateway.config.compiler import compile_bytes
from gateway.errors import ConfigErrors
from gateway.pluginmanager import build_plugin_manager

from ..cli_runner import run_cli
from ..gateway_process import write_atomically
from ..inprocess_gateway import poll, while_sending

BASE = """
version: 1
providers:
  demo: {{type: mock}}
  other: {{type: mock}}
routes:
  chat: {{target: {{provider: demo, model: m1}}}}
  guarded:
    fallback:
      on_status: [500]
      targets:
        - target: {{provider: demo, model: bad-model}}
        - target: {{provider: other, model: good-model}}
  only-bad: {{target: {{provider: demo, model: bad-model, retry: {{attempts: 1}}}}}}
{plugins}
"""


def config(plugins: str = "") -> str:
    return BASE.format(plugins=plugins)


def chat(gw, model: str = "chat", stream: bool = False, content: str = "hello") -> httpx.Response:
    return gw.post("/v1/chat/completions", json={
        "model": model, "stream": stream, "messages": [{"role": "user", "content": content}]})


def test_entry_points_are_discovered():
    """Installed plugins are found through the `gateway` entry-point group, no patching."""
    names = {ep.name for ep in entry_points(group="gateway")}
    assert {"test-stamp", "test-stamp-2", "test-crash", "test-reject", "test-extras"} <= names
    pm = build_plugin_manager()
    assert {"test-stamp", "test-crash"} <= set(pm.installed())
    assert pm.builtins() == ["builtin:auth", "builtin:limits", "builtin:providers", "builtin:cache",
                            "builtin:frontdoors", "builtin:files", "builtin:fine_tuning",
                            "builtin:metrics", "builtin:traces", "builtin:request_log",
                            "builtin:dashboard"]


def test_unknown_plugin_is_an_error_with_position():
    """An unknown plugin name is reported at its line, with a suggestion."""
    text = config("plugins:\n  - name: test-stmp\n    config: {value: a}\n")
    with pytest.raises(ConfigErrors) as info:
        compile_bytes(text.encode(), "g.yaml")
    (err,) = info.value.errors
    assert (err.line, err.column, err.path) == (16, 11, "$.plugins[0].name")
    assert err.message.startswith("unknown plugin 'test-stmp'")
    assert err.hint == "did you mean 'test-stamp'?"


def test_plugin_config_is_validated_by_its_schema():
    """A config that fails the plugin's own schema is an error at the offending key."""
    text = config("plugins:\n  - name: test-stamp\n    config: {value: a, colour: red}\n"
                  "  - name: test-crash\n    config: {where: nowhere}\n")
    with pytest.raises(ConfigErrors) as info:
        compile_bytes(text.encode(), "g.yaml")
    found = [(e.line, e.column, e.path, e.message) for e in info.value.errors]
    assert found[0][:3] == (17, 24, "$.plugins[0].config.colour")
    assert found[0][3].startswith("unknown key 'colour'")
    assert found[1][:3] == (19, 21, "$.plugins[1].config.where")
    assert "'nowhere' is not one of: setup, request, response, chunk, check" in found[1][3]


def test_plugin_listed_twice_is_an_error():
    """The same plugin twice in the list is an error naming the first entry."""
    text = config("plugins:\n  - {name: test-stamp, config: {value: a}}\n"
                  "  - {name: test-stamp, config: {value: b}}\n")
    with pytest.raises(ConfigErrors) as info:
        compile_bytes(text.encode(), "g.yaml")
    assert info.value.errors[0].message == "plugin 'test-stamp' is already listed at plugins[0]"


def test_validate_cli_catches_plugin_errors(tmp_path):
    """`gateway validate` checks plugin configs too, so CI catches them."""
    path = tmp_path / "g.yaml"
    path.write_text(config("plugins:\n  - {name: test-crash, config: {where: setup}}\n"))
    result = run_cli("validate", path)
    assert result.code == 1
    assert (f"{path}:16:5: $.plugins[0]: plugin 'test-crash' failed to set up: "
            "RuntimeError: cannot set up: missing license file") in result.err


def test_order_is_list_order(gateway_app):
    """Request middleware runs in list order, response middleware in reverse (an onion), and
    a change to the request reaches the upstream."""
    gw = gateway_app(config(
        "plugins:\n"
        "  - {name: test-stamp, config: {value: first, prefix: '[1]'}}\n"
        "  - {name: test-stamp-2, config: {value: second, prefix: '[2]'}}\n"))
    r = chat(gw)
    assert r.status_code == 200
    assert r.headers["x-test-stamp"] == "second,first"
    assert r.json()["choices"][0]["message"]["content"] == "Mock reply from m1: [2] [1] hello"


def test_reordering_by_reload_changes_the_order(gateway_app):
    """Swapping two plugins in the list and saving swaps their order in the chain."""
    first = ("plugins:\n  - {name: test-stamp, config: {value: a}}\n"
             "  - {name: test-stamp-2, config: {value: b}}\n")
    gw = gateway_app(config(first))
    assert chat(gw).headers["x-test-stamp"] == "b,a"
    write_atomically(gw.config_path, config(
        "plugins:\n  - {name: test-stamp-2, config: {value: b}}\n"
        "  - {name: test-stamp, config: {value: a}}\n"))
    gw.wait_for_version(2)
    assert chat(gw).headers["x-test-stamp"] == "a,b"


def test_stream_chunks_pass_through_plugins(gateway_app):
    """Response middleware sees each stream chunk and can add bytes at the end."""
    gw = gateway_app(config("plugins:\n  - {name: test-stamp, config: {value: s}}\n"))
    r = chat(gw, stream=True)
    assert r.status_code == 200
    tail = r.text.rstrip().splitlines()[-1]
    assert tail.startswith(": stamped s after ") and tail.endswith(" chunks")
    assert "data: [DONE]" in r.text


@pytest.mark.parametrize("where, status", [("request", 500), ("response", 500)])
def test_plugin_failure_is_a_500_naming_it(gateway_app, where, status):
    """A plugin that raises yields a 500 in OpenAI's shape naming it; the server lives on."""
    gw = gateway_app(config(f"plugins:\n  - {{name: test-crash, config: {{where: {where}}}}}\n"))
    r = chat(gw)
    assert r.status_code == status
    error = r.json()["error"]
    assert error["code"] == "plugin_error" and error["type"] == "server_error"
    assert error["message"].startswith("plugin 'test-crash' failed: ")
    assert "exploded" not in error["message"]  # the exception's text: only in the log
    assert gw.get("/healthz").status_code == 200
    log = gw.log()
    assert '"plugin_failed"' in log and "Traceback" in log and "exploded" in log


def test_plugin_failure_mid_stream_ends_with_sse_error(gateway_app):
    """A plugin failing after the stream started ends it with an SSE error event."""
    gw = gateway_app(config(
        "plugins:\n  - {name: test-crash, config: {where: chunk, after_chunks: 2}}\n"))
    client = gw.openai(api_key="x")
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}], stream=True):
            received.append(chunk)
    assert len(received) == 2
    assert "plugin 'test-crash' failed" in str(info.value)


def test_attempt_check_failure_is_a_500(gateway_app):
    """An attempt check that raises is a plugin failure, not a guardrail refusal."""
    gw = gateway_app(config("plugins:\n  - {name: test-crash, config: {where: check}}\n"))
    r = chat(gw)
    assert r.status_code == 500 and r.json()["error"]["code"] == "plugin_error"
    assert r.json()["error"]["message"].startswith("plugin 'test-crash' failed: ")
    assert "check exploded" in gw.log() and "check exploded" not in r.text


def test_refused_answer_falls_back_whatever_on_status_says(gateway_app):
    """An answer refused by an attempt check moves a fallback on even though its on_status
    lists only 500; with no target left the client gets 503 naming the rule."""
    gw = gateway_app(config("plugins:\n  - {name: test-reject, config: {model: bad-model}}\n"))
    r = chat(gw, "guarded")
    assert r.status_code == 200
    assert r.headers["x-gateway-target"] == "other/good-model"
    assert r.headers["x-gateway-attempts"] == "2"
    refused = chat(gw, "only-bad")
    assert refused.status_code == 503
    message = refused.json()["error"]["message"]
    assert "refused by plugin 'test-reject': answers of bad-model are not allowed" in message


def test_provider_type_from_a_plugin(gateway_app):
    """A plugin's register_providers adds a provider type usable in the config."""
    gw = gateway_app("""
version: 1
providers:
  echo: {type: test-echo}
routes:
  rev: {target: {provider: echo, model: e}}
""")
    assert chat(gw, "rev", content="abc").json()["choices"][0]["message"]["content"] == "cba"


def test_cli_command_from_a_plugin():
    """A plugin's register_commands adds a `gateway` subcommand."""
    result = run_cli("test-hello", "there")
    assert result.code == 0 and result.out == "hello there\n"


def test_setup_failure_on_reload_keeps_the_old_config(gateway_app):
    """A plugin that raises while setting up rejects the new config; the old one serves."""
    gw = gateway_app(config())
    write_atomically(gw.config_path, config("plugins:\n  - {name: test-crash, config: {where: setup}}\n"))
    info = poll(lambda: gw.get("/admin/config").json(), lambda info: info["last_rejection"])
    assert "missing license file" in info["last_rejection"]["errors"][0]["message"]
    assert info["version"] == 1 and chat(gw).status_code == 200


def test_reload_adds_and_removes_plugins_under_traffic(gateway_app, quick_settle):
    """Adding, reconfiguring and removing a plugin by reload: zero failed requests, and each
    answer carries the plugin state of the config version it reports."""
    gw = gateway_app(config())
    versions = {1: None}
    seen: list[tuple[int, str | None]] = []
    failures: list[str] = []

    def traffic() -> None:
        r = chat(gw, content="x")
        if r.status_code != 200:
            failures.append(r.text)
        else:
            seen.append((int(r.headers["x-gateway-config-version"]), r.headers.get("x-test-stamp")))

    def reloads() -> None:
        poll(lambda: len(seen), lambda n: n >= 5)  # some traffic on version 1 first
        steps = ["a", "b", None, "c", None, "d"]
        for version, value in enumerate(steps, start=2):
            plugins = f"plugins:\n  - {{name: test-stamp, config: {{value: {value}}}}}\n" if value else ""
            versions[version] = value
            write_atomically(gw.config_path, config(plugins))
            gw.wait_for_version(version)
            time.sleep(0.15)

    while_sending(traffic, 8, reloads)
    assert failures == []
    assert len(seen) >= 100
    assert {v for v, _ in seen} == set(versions)
    for version, stamp in seen:
        assert stamp == versions[version], (version, stamp)


HOOKS = ["plugin_config_schema", "request_middleware", "response_middleware", "attempt_check",
         "register_commands", "register_providers", "authenticator", "admin_routes", "api_routes",
         "readiness_check", "metrics_collector", "response_headers",
         "request_finished", "background_task"]


def test_every_hook_is_documented_with_its_signature():
    """docs/plugins.md has a section per hook spec, and no section for a hook that is gone."""
    import inspect
    from pathlib import Path

    from gateway import hookspecs

    specs = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
                   if hasattr(fn, "gateway_spec"))
    assert specs == sorted(HOOKS)
    doc = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()
    documented = sorted(line.split("`")[1].split("(")[0] for line in doc.splitlines()
                        if line.startswith("### `"))
    assert documented == specs
    for name in specs:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"### `{name}({params})" in doc
