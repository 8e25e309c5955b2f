"""secret:NAME references: resolved into the compiled graph, errors at line:col, no leaks."""

from __future__ import annotations

from pathlib import Path

import pytest

import gateway.config.secrets as secrets_module
from gateway.config.compiler import compile_bytes, compile_loaded
from gateway.config.loader import load_bytes
from gateway.errors import ConfigErrors
from gateway.vault import Vault

from .helpers import cli, clean_env, new_key

VALUES = {"upstream": "sk-up-0123456789", "azure-ad": "eyJ0eXAiOiJKV1Qi.token",
          "aws-id": "AKIAIOSFODNN7EXAMPLE", "aws-secret": "wJalrXUtnFEMI/K7MDENG",
          "hdr": "tenant-secret-42"}

CONFIG = """\
version: 1
providers:
  up:
    type: openai-compatible
    base_url: http://127.0.0.1:9/v1
    api_key: secret:upstream
    headers:
      x-tenant-token: secret:hdr
      x-plain: not-a-reference
  az:
    type: azure-openai
    base_url: https://example.openai.azure.com
    api_version: "2024-10-21"
    azure_ad_token: secret:azure-ad
  br:
    type: bedrock
    region: us-east-1
    aws_access_key_id: secret:aws-id
    aws_secret_access_key: secret:aws-secret
routes:
  a: {target: {provider: up, model: m}}
  b: {target: {provider: az, model: gpt-4o}}
  c: {target: {provider: br, model: anthropic.claude-3-haiku}}
"""


@pytest.fixture
def key(monkeypatch) -> str:
    """GATEWAY_MASTER_KEY for this test, and no other master-key variable."""
    value = new_key()
    monkeypatch.delenv("GATEWAY_MASTER_PASSPHRASE", raising=False)
    monkeypatch.setenv("GATEWAY_MASTER_KEY", value)
    return value


def store(folder: Path, key: str, values: dict = VALUES) -> None:
    vault = Vault(str(folder / ".gateway"), {"GATEWAY_MASTER_KEY": key})
    for name, value in values.items():
        vault.set(name, value)


def compile_in(folder: Path, text: str):
    return compile_bytes(text.encode(), str(folder / "gateway.yaml"), env={})


def errors_of(folder: Path, text: str):
    with pytest.raises(ConfigErrors) as info:
        compile_in(folder, text)
    return info.value.errors


def test_references_resolve_into_the_graph(tmp_path: Path, key: str):
    """api_key, header values, azure_ad_token and aws_* take the vault's values."""
    store(tmp_path, key)
    graph = compile_in(tmp_path, CONFIG)
    up = graph.providers["up"].spec
    assert up.api_key == VALUES["upstream"]
    assert up.headers == {"x-tenant-token": VALUES["hdr"], "x-plain": "not-a-reference"}
    assert graph.providers["az"].spec.options["azure_ad_token"] == VALUES["azure-ad"]
    br = graph.providers["br"].spec.options
    assert (br["aws_access_key_id"], br["aws_secret_access_key"]) == (VALUES["aws-id"],
                                                                      VALUES["aws-secret"])
    assert "secret:upstream" in graph.text and VALUES["upstream"] not in graph.text


def test_the_loaded_config_keeps_its_references(tmp_path: Path, key: str):
    """Compiling does not write vault values into the LoadedConfig its caller keeps."""
    store(tmp_path, key)
    loaded = load_bytes(CONFIG.encode(), str(tmp_path / "gateway.yaml"), {})
    compile_loaded(loaded)
    assert loaded.data["providers"]["up"]["api_key"] == "secret:upstream"
    assert loaded.data["providers"]["up"]["headers"]["x-tenant-token"] == "secret:hdr"


def test_unknown_name_is_an_error_at_its_line_and_column(tmp_path: Path, key: str):
    """A misspelt name: FILE:LINE:COL of the value, with a suggestion from the vault."""
    store(tmp_path, key)
    text = CONFIG.replace("secret:upstream", "secret:upstraem")
    (error,) = errors_of(tmp_path, text)
    assert (error.line, error.column) == (6, 14)
    assert error.path == "$.providers.up.api_key"
    assert str(error) == (
        f"{tmp_path / 'gateway.yaml'}:6:14: $.providers.up.api_key: unknown secret 'upstraem' "
        f"(not in the vault at {tmp_path / '.gateway' / 'vault.json'}) "
        "(did you mean 'upstream'?)")


def test_unknown_name_without_a_vault_says_how_to_store_it(tmp_path: Path, key: str):
    """No vault at all: each reference is an error that names `gateway secrets set`."""
    errors = errors_of(tmp_path, CONFIG)
    assert len(errors) == 5
    first = errors[0]
    assert (first.line, first.column) == (6, 14)
    assert "unknown secret 'upstream': there is no vault at" in first.message
    assert first.hint == "store it with: gateway secrets set upstream"


def test_malformed_reference_is_an_error(tmp_path: Path, key: str):
    """`secret:` with no name, or a name with spaces, is reported where it is written."""
    text = ("version: 1\nproviders:\n  up: {type: openai, api_key: 'secret:'}\n"
            "  b: {type: openai, api_key: 'secret:has space'}\n"
            "routes: {a: {target: {provider: up, model: m}}}\n")
    errors = errors_of(tmp_path, text)
    assert [(e.line, e.column) for e in errors] == [(3, 31), (4, 30)]
    assert all("must be followed by the name of a secret" in e.message for e in errors)
    assert all("has space" not in str(e) for e in errors)


def test_wrong_master_key_is_a_config_error_without_values(tmp_path: Path, key: str, monkeypatch):
    """An unreadable vault rejects the config with the clear message, at the first reference."""
    store(tmp_path, key)
    monkeypatch.setenv("GATEWAY_MASTER_KEY", new_key())
    (error,) = errors_of(tmp_path, CONFIG)
    assert (error.line, error.column) == (6, 14)
    assert "cannot be decrypted with this master key: was GATEWAY_MASTER_KEY changed?" in error.message
    assert not any(v in str(error) for v in VALUES.values())


def test_no_reference_never_opens_the_vault(tmp_path: Path, monkeypatch):
    """Without secret: values no vault is read, even a broken one with a bad key variable."""
    monkeypatch.setenv("GATEWAY_MASTER_KEY", "not-a-key")
    (tmp_path / ".gateway").mkdir()
    (tmp_path / ".gateway" / "vault.json").write_text("garbage")
    opened = []
    monkeypatch.setattr(secrets_module, "Vault", lambda *a, **k: opened.append(a))
    text = ("version: 1\nproviders: {up: {type: openai, api_key: sk-plain}}\n"
            "routes: {a: {target: {provider: up, model: m}}}\n")
    assert compile_in(tmp_path, text).providers["up"].spec.api_key == "sk-plain"
    assert opened == []


def test_vault_file_is_read_once_per_compile(tmp_path: Path, key: str, monkeypatch):
    """Five references cost one reading of vault.json."""
    store(tmp_path, key)
    reads = []
    original = Vault._load
    monkeypatch.setattr(Vault, "_load", lambda self: reads.append(1) or original(self))
    compile_in(tmp_path, CONFIG)
    assert len(reads) == 1


def test_other_errors_do_not_show_resolved_values(tmp_path: Path, key: str):
    """When a config with resolved secrets fails elsewhere, no message carries a value."""
    store(tmp_path, key)
    text = CONFIG.replace("model: anthropic.claude-3-haiku", "model: x}}\n  d: {route: nope")
    errors = errors_of(tmp_path, text)
    assert errors and all(not any(v in str(e) for v in VALUES.values()) for e in errors)


def test_validate_and_diff_show_references_only(tmp_path: Path, key: str):
    """`gateway validate` resolves quietly; `gateway diff` shows secret:NAME, never a value."""
    store(tmp_path, key)
    old, new = tmp_path / "gateway.yaml", tmp_path / "new.yaml"
    old.write_text(CONFIG)
    new.write_text(CONFIG.replace("secret:hdr", "secret:upstream"))
    env = clean_env(GATEWAY_MASTER_KEY=key)
    validated = cli("validate", str(old), str(new), env=env)
    assert validated.returncode == 0, validated.stdout
    diffed = cli("diff", str(new), "--against", str(old), env=env)
    assert diffed.returncode == 1, diffed.stderr
    assert "secret:upstream" in diffed.stdout
    out = validated.stdout + validated.stderr + diffed.stdout + diffed.stderr
    assert not any(v in out for v in VALUES.values())
    no_vault = cli("diff", str(new), "--against", str(old), env=clean_env())
    assert no_vault.returncode == 1  # diff never needs the vault


def test_an_alert_webhook_secret_resolves_from_the_vault(tmp_path: Path, key: str):
    """observability.alerts[].secret may be secret:NAME like a provider's key: the compiled
    webhook signs with the vault's value, the config text keeps the reference, the value is
    scrubbed from upstream error text, and the loaded config is not changed."""
    store(tmp_path, key, {"alerts-hmac": "whsec-from-the-vault-77"})
    text = ("version: 1\nproviders: {d: {type: mock}}\nroutes: {a: {target: {provider: d, model: m}}}\n"
            "observability:\n  alerts: [{on: [circuit_open], webhook: 'http://127.0.0.1:9/h', "
            "secret: 'secret:alerts-hmac'}]\n")
    loaded = load_bytes(text.encode(), str(tmp_path / "gateway.yaml"), {})
    graph = compile_loaded(loaded)
    assert graph.alerts[0].secret == "whsec-from-the-vault-77"
    assert loaded.data["observability"]["alerts"][0]["secret"] == "secret:alerts-hmac"
    assert "whsec-from-the-vault-77" not in graph.scrubber.text("upstream said whsec-from-the-vault-77")
