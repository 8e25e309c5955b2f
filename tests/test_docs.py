"""The docs say what the gateway does: config.md covers every schema section, and the README's
examples run as written."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from gateway.cli import main as gateway

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "schemas" / "gateway.schema.json").read_text())
CONFIG_MD = (ROOT / "docs" / "config.md").read_text()
README = (ROOT / "README.md").read_text()


def resolve(node: dict) -> dict:
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def second_level(node: dict) -> list[str]:
    """The keys one level down: a section's own properties, or those of each of its entries
    (providers, keys, teams, pricing, plugins)."""
    node = resolve(node)
    entry = node.get("additionalProperties") if isinstance(
        node.get("additionalProperties"), dict) else node.get("items")
    for candidate in (node, resolve(entry) if isinstance(entry, dict) else {}):
        if "properties" in candidate:
            return list(candidate["properties"])
    return []


def sections() -> dict[str, str]:
    """config.md's `## ` sections by every `key` their heading names."""
    found = {}
    for part in re.split(r"^## ", CONFIG_MD, flags=re.M)[1:]:
        heading = part.partition("\n")[0]
        for key in re.findall(r"`([a-z_]+)`", heading):
            found[key] = part
    return found


@pytest.mark.parametrize("key", list(SCHEMA["properties"]))
def test_config_md_documents_every_schema_section(key):
    """Each top-level key of the schema has a `## ` heading in docs/config.md, and every key
    one level below it is named (in `backticks`) in that section."""
    documented = sections()
    assert key in documented, f"docs/config.md has no '## `{key}`' section"
    missing = [sub for sub in second_level(SCHEMA["properties"][key])
               if f"`{sub}`" not in documented[key]]
    assert not missing, f"docs/config.md section `{key}` does not name {missing}"


def test_budget_keys_are_documented():
    """budget (under keys and teams) is documented key by key, alert_at and enforcement too."""
    budget = sections()["teams"]
    assert all(f"`{k}`" in budget for k in SCHEMA["$defs"]["budget"]["properties"])


def fenced(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.M | re.S)


def test_readme_config_validates_without_its_variables(tmp_path, monkeypatch):
    """The README's config refers to ${OPENAI_API_KEY}; it validates without it set."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    block = next(b for b in fenced("yaml") if "OPENAI_API_KEY" in b)
    path = tmp_path / "gateway.yaml"
    path.write_text(block)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = gateway(["validate", str(path)])
    assert code == 0, out.getvalue() + err.getvalue()


def test_readme_python_example_prints_one_line_per_print(gateway_app):
    """The README's openai-client example, run against `make run`'s gateway.yaml, prints
    four clean lines: the reply, the streamed text, an embedding's start, the models."""
    gw = gateway_app((ROOT / "gateway.yaml").read_text())
    url = gw.listen()
    code = next(b for b in fenced("python") if "from openai import OpenAI" in b)
    code = code.replace("http://127.0.0.1:8080/v1", url + "/v1")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert lines[0].startswith("Mock reply from") and lines[1].startswith("Mock reply from")
    assert lines[2].startswith("[") and "smart" in lines[3]
