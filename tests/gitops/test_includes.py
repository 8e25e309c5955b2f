"""include: and environments: — one merged document, every value still at its FILE:LINE:COL."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.compiler import compile_file
from gateway.config.loader import load_bytes, load_file
from gateway.errors import ConfigErrors


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder / next(iter(files))


def errors_of(path: Path, env: dict | None = None, environment: str | None = None) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_file(str(path), env or {}, environment)
    return [str(e) for e in info.value.errors]


MAIN = """\
version: 1
include: [providers.yaml, routes/chat.yaml]
server: {port: 8080}
"""
PROVIDERS = """\
providers:
  demo: {type: mock}
"""
CHAT = """\
routes:
  chat: {target: {provider: demo, model: m1}}
"""


def test_includes_merge_sections_and_keep_their_files(tmp_path):
    """Sections from included files merge into one document; each value names its own file."""
    main = write(tmp_path, {"gateway.yaml": MAIN, "providers.yaml": PROVIDERS,
                            "routes/chat.yaml": CHAT})
    loaded = load_file(str(main), {})
    assert loaded.data == {
        "version": 1, "server": {"port": 8080},
        "providers": {"demo": {"type": "mock"}},
        "routes": {"chat": {"target": {"provider": "demo", "model": "m1"}}},
    }
    assert [f.name for f in loaded.includes] == ["providers.yaml", "routes/chat.yaml"]
    model = loaded.source.error(("routes", "chat", "target", "model"), "x")
    assert (model.file, model.line, model.column) == (str(tmp_path / "routes/chat.yaml"), 2, 42)
    port = loaded.source.error(("server", "port"), "x")
    assert (port.file, port.line, port.column) == (str(main), 3, 16)


def test_compiler_errors_point_into_the_included_file(tmp_path):
    """A semantic error in an included file is reported at that file's line and column."""
    main = write(tmp_path, {"gateway.yaml": MAIN, "providers.yaml": PROVIDERS,
                            "routes/chat.yaml": "routes:\n  chat: {target: {provider: dmeo, model: m}}\n"})
    with pytest.raises(ConfigErrors) as info:
        compile_file(str(main), env={})
    assert [str(e) for e in info.value.errors] == [
        f"{tmp_path / 'routes/chat.yaml'}:2:29: $.routes.chat.target.provider: unknown provider "
        "'dmeo' (did you mean 'demo'?)"]


def test_sha256_covers_included_files(tmp_path):
    """Changing only an included file changes the config's sha256."""
    main = write(tmp_path, {"gateway.yaml": MAIN, "providers.yaml": PROVIDERS,
                            "routes/chat.yaml": CHAT})
    before = load_file(str(main), {}).sha256
    (tmp_path / "routes/chat.yaml").write_text(CHAT.replace("m1", "m2"))
    assert load_file(str(main), {}).sha256 != before


def test_missing_include_names_file_and_line(tmp_path):
    """A missing included file is an error at the include entry, naming the path it tried."""
    main = write(tmp_path, {"gateway.yaml": "version: 1\ninclude:\n  - providers.yaml\n  - nope.yaml\n",
                            "providers.yaml": PROVIDERS})
    assert errors_of(main) == [
        f"{main}:4:5: $.include[1]: cannot read included file 'nope.yaml' ({tmp_path / 'nope.yaml'}): "
        "No such file or directory (include paths are relative to the folder of the file that "
        "includes them)"]


def test_include_cycle_is_an_error_with_the_chain(tmp_path):
    """a.yaml -> b.yaml -> a.yaml is reported at the include that closes the cycle."""
    main = write(tmp_path, {"a.yaml": "version: 1\ninclude: b.yaml\n",
                            "b.yaml": "providers: {demo: {type: mock}}\ninclude: [a.yaml]\n"})
    assert errors_of(main) == [
        f"{tmp_path / 'b.yaml'}:2:11: $.include[0]: include cycle: a.yaml -> b.yaml -> a.yaml "
        "(a file may not include itself, directly or through other files)"]


def test_redefining_an_entry_in_an_include_is_an_error(tmp_path):
    """The same route in two files is an error at the second, naming the first."""
    main = write(tmp_path, {"gateway.yaml": "version: 1\ninclude: chat.yaml\nroutes:\n"
                                            "  chat: {target: {provider: demo, model: a}}\n",
                            "chat.yaml": CHAT})
    (message,) = errors_of(main)
    assert message.startswith(f"{tmp_path / 'chat.yaml'}:2:3: $.routes.chat: routes.chat is "
                              f"already defined at {main}:4:3")


def test_a_broken_included_file_is_reported_in_that_file(tmp_path):
    """A YAML error inside an included file names the included file and its line."""
    main = write(tmp_path, {"gateway.yaml": "version: 1\ninclude: bad.yaml\n",
                            "bad.yaml": "providers:\n  demo: {type: mock\n"})
    (message,) = errors_of(main)
    assert message.startswith(f"{tmp_path / 'bad.yaml'}:3:1: YAML syntax error")


def test_include_must_be_names(tmp_path):
    """include: 3 is an error at its line saying what to write."""
    main = write(tmp_path, {"gateway.yaml": "version: 1\ninclude: 3\n"})
    assert errors_of(main) == [f"{main}:2:10: $.include: include must be a file name or a list "
                               "of file names (write include: [providers.yaml, routes/chat.yaml])"]


def test_a_file_included_twice_is_read_once(tmp_path):
    """Two files including the same third one do not conflict with themselves."""
    main = write(tmp_path, {"gateway.yaml": "version: 1\ninclude: [a.yaml, b.yaml]\n",
                            "a.yaml": "include: common.yaml\nroutes: {a: {route: c}}\n",
                            "b.yaml": "include: common.yaml\n",
                            "common.yaml": "providers: {demo: {type: mock}}\n"
                                           "routes: {c: {target: {provider: demo, model: m}}}\n"})
    loaded = load_file(str(main), {})
    assert sorted(loaded.data["routes"]) == ["a", "c"]
    assert [f.name for f in loaded.includes] == ["a.yaml", "common.yaml", "b.yaml"]


ENVS = """\
version: 1
server: {port: 8080}
providers:
  demo: {type: mock}
  openai: {type: openai, api_key: "${DEV_KEY}"}
routes:
  chat:
    fallback:
      targets:
        - target: {provider: demo, model: a}
        - target: {provider: demo, model: b}
  debug: {target: {provider: demo, model: debug}}
  cheap: {target: {provider: demo, model: small, timeout: 10s}}
environments:
  prod:
    server: {port: 9090}
    providers:
      openai: {api_key: "${PROD_KEY}"}
    routes:
      chat: {target: {provider: openai, model: gpt-4o}}
      debug: null
      cheap: {target: {model: medium}}
  staging:
    providers:
      openai: {api_key: "${STAGING_KEY}"}
"""


def test_environment_overlay_rules(tmp_path):
    """Mappings merge, a new node kind replaces the old, null removes, scalars replace."""
    main = write(tmp_path, {"gateway.yaml": ENVS})
    loaded = load_file(str(main), {"PROD_KEY": "k"}, "prod")
    data = loaded.data
    assert loaded.environment == "prod"
    assert data["server"] == {"port": 9090}
    assert data["providers"]["openai"] == {"type": "openai", "api_key": "k"}
    assert data["routes"] == {
        "chat": {"target": {"provider": "openai", "model": "gpt-4o"}},
        "cheap": {"target": {"provider": "demo", "model": "medium", "timeout": "10s"}},
    }
    assert "environments" not in data
    assert sorted(loaded.overlays) == ["prod", "staging"]


def test_overlay_values_keep_the_overlay_position(tmp_path):
    """An error in a value the overlay set points at the overlay's line."""
    main = write(tmp_path, {"gateway.yaml": ENVS.replace("model: gpt-4o", "model: gpt-4o, retry: {attempts: 9}")})
    with pytest.raises(ConfigErrors) as info:
        compile_file(str(main), env={"PROD_KEY": "k"}, environment="prod")
    texts = [str(e) for e in info.value.errors]
    assert any(t.startswith(f"{main}:20:") and "$.routes.chat.target.retry.attempts" in t
               for t in texts), texts


def test_unset_variables_of_other_environments_are_not_errors(tmp_path):
    """Only variables whose value ends up in the merged config must be set."""
    main = write(tmp_path, {"gateway.yaml": ENVS})
    assert load_file(str(main), {"PROD_KEY": "k"}, "prod").data["server"]["port"] == 9090
    assert load_file(str(main), {"DEV_KEY": "d"}).data["providers"]["openai"]["api_key"] == "d"
    assert errors_of(main, {"DEV_KEY": "d"}, "staging") == [
        f"{main}:25:25: $.environments.staging.providers.openai.api_key: environment variable "
        "${STAGING_KEY} is not set (set STAGING_KEY, or give a default: ${STAGING_KEY:-value})"]


def test_unknown_environment_lists_the_defined_ones(tmp_path):
    """--env prdo is an error at environments:, with the names and a suggestion."""
    main = write(tmp_path, {"gateway.yaml": ENVS})
    assert errors_of(main, {"DEV_KEY": "d"}, "prdo") == [
        f"{main}:14:1: $.environments: unknown environment 'prdo' (defined: prod, staging) "
        "(did you mean 'prod'?)"]


def test_gateway_env_selects_the_environment(tmp_path):
    """GATEWAY_ENV in the environment selects the overlay when none is given."""
    main = write(tmp_path, {"gateway.yaml": ENVS})
    loaded = load_file(str(main), {"GATEWAY_ENV": "prod", "PROD_KEY": "k"})
    assert loaded.environment == "prod" and loaded.data["server"]["port"] == 9090


def test_selecting_an_environment_without_environments_is_an_error(tmp_path):
    """A selected environment in a config that defines none is refused, not ignored."""
    main = write(tmp_path, {"gateway.yaml": "version: 1\n"})
    assert errors_of(main, {}, "prod") == [
        f"{main}:1:1: environment 'prod' is selected (--env or GATEWAY_ENV) but the config "
        "defines no environments: (add environments: or unset GATEWAY_ENV)"]


def test_overlay_may_not_include(tmp_path):
    """include: inside an environment overlay is an error at its key."""
    main = write(tmp_path, {"gateway.yaml": "version: 1\nenvironments:\n  prod:\n    include: x.yaml\n"})
    assert errors_of(main, {}, "prod") == [
        f"{main}:4:5: $.environments.prod.include: an environment overlay cannot contain include: "
        "(put include: and environments: at the top level)"]


def test_plain_files_load_as_before():
    """A file without include/environments keeps the sha256 of its bytes and no extras."""
    raw = b"version: 1\n"
    loaded = load_bytes(raw, "g.yaml", {})
    assert loaded.includes == () and loaded.environment is None and loaded.overlays == {}
    import hashlib

    assert loaded.sha256 == hashlib.sha256(raw).hexdigest()


def test_keep_refs_leaves_variables_as_written():
    """keep_refs=True keeps ${VAR} (with defaults) as written and never needs the variable."""
    loaded = load_bytes(b"version: 1\nserver:\n  port: ${PORT:-8080}\nproviders:\n"
                        b"  o: {type: openai, api_key: '${OPENAI_API_KEY}'}\n", "g.yaml", {},
                        keep_refs=True)
    assert loaded.data["server"]["port"] == "${PORT:-8080}"
    assert loaded.data["providers"]["o"]["api_key"] == "${OPENAI_API_KEY}"


