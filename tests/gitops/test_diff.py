"""`gateway diff`: a semantic diff between configs in a git repository, field by field."""

from __future__ import annotations

import pytest

from .conftest import LITERAL_SECRET, GitRepo

H1 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
H2 = "8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92"

C1 = f"""\
version: 1
server: {{port: 8080}}
providers:
  demo: {{type: mock}}
  openai:
    type: openai
    api_key: "${{OPENAI_API_KEY}}"
    headers: {{X-Org-Token: {LITERAL_SECRET}}}
routes:
  chat: {{target: {{provider: demo, model: m1}}}}
  smart:
    fallback:
      targets:
        - target: {{provider: demo, model: big}}
        - target: {{provider: demo, model: small}}
  cheap:
    loadbalance:
      targets:
        - {{weight: 3, target: {{provider: demo, model: a}}}}
        - {{weight: 1, target: {{provider: demo, model: b}}}}
keys:
  team: {{key_sha256: {H1}, routes: [chat, smart]}}
"""

C2 = C1.replace("model: m1", "model: m2") \
    .replace("weight: 3", "weight: 1") \
    .replace("${OPENAI_API_KEY}", "${OPENAI_API_KEY_V2}") \
    .replace("model: big}", "model: big, retry: {attempts: 3}}") \
    .replace(H1, H2) \
    .replace("keys:\n", "  rollout:\n    canary: {percent: 10, stable: {route: smart}, "
                        "canary: {target: {provider: demo, model: new}}}\nkeys:\n")

C3 = C2.replace("  chat: {target: {provider: demo, model: m2}}\n", "") \
    .replace("      targets:\n        - target: {provider: demo, model: big",
             "      on_status: [429, 503]\n      targets:\n        - target: {provider: demo, model: big") \
    .replace("server: {port: 8080}", "server: {port: 9090}") \
    .replace("routes: [chat, smart]", "routes: [smart]")


@pytest.fixture
def commits(repo: GitRepo) -> list[str]:
    """Three commits of gateway.yaml: C1, C2, C3."""
    return [repo.commit({"gateway.yaml": text}, f"c{i}") for i, text in enumerate((C1, C2, C3), 1)]


def changes(result) -> set[tuple]:
    return {(c["section"], c["name"], c["path"], c["kind"], c["what"], _h(c["old"]), _h(c["new"]))
            for c in result.json["changes"]}


def _h(value):
    return repr(value) if isinstance(value, (dict, list)) else value


def diff_commits(cli, repo: GitRepo, commits: list[str], new: int, old: int):
    repo.git("checkout", "-q", commits[new], "--", "gateway.yaml")
    return cli("diff", repo.path / "gateway.yaml", "--against", f"git:{commits[old]}",
               "--format", "json")


def test_diff_c1_c2_field_by_field(cli, repo, commits):
    """C1 -> C2: model, weight, retry policy, a secret reference, a new route, a rotated key."""
    result = diff_commits(cli, repo, commits, 1, 0)
    assert result.code == 1
    canary = {"canary": {"percent": 10, "stable": {"route": "smart"},
                         "canary": {"target": {"provider": "demo", "model": "new"}}}}
    assert changes(result) == {
        ("providers", "openai", "api_key", "changed", "secret", "${OPENAI_API_KEY}",
         "${OPENAI_API_KEY_V2}"),
        ("routes", "chat", "target.model", "changed", "target", "m1", "m2"),
        ("routes", "smart", "fallback.targets[0].target.retry", "added", "policy", None,
         repr({"attempts": 3})),
        ("routes", "cheap", "loadbalance.targets[0].weight", "changed", "weight", 3, 1),
        ("routes", "rollout", "", "added", "route", None, repr(canary)),
        ("keys", "team", "key_sha256", "changed", "key", "(hash hidden)", "(hash hidden)"),
    }
    body = result.json
    assert body["routes"] == {"added": ["rollout"], "removed": [], "changed": ["chat", "smart", "cheap"]}
    assert body["routing"]["cheap"] == {"old": "75% demo/a | 25% demo/b", "new": "50% demo/a | 50% demo/b"}
    assert body["routing"]["rollout"] == {"old": None,
                                          "new": "90% (demo/big -> demo/small) | 10% canary demo/new"}
    assert H1 not in result.out and H2 not in result.out


def test_diff_c2_c3_field_by_field(cli, repo, commits):
    """C2 -> C3: a removed route, a fallback policy, a server setting, a key's routes."""
    result = diff_commits(cli, repo, commits, 2, 1)
    assert result.code == 1
    assert changes(result) == {
        ("server", None, "port", "changed", "setting", 8080, 9090),
        ("routes", "chat", "", "removed", "route",
         repr({"target": {"provider": "demo", "model": "m2"}}), None),
        ("routes", "smart", "fallback.on_status", "added", "policy", None, repr([429, 503])),
        ("keys", "team", "routes", "changed", "policy", repr(["chat", "smart"]), repr(["smart"])),
    }
    assert result.json["sections"] == ["server", "keys"]


def test_diff_c1_c3_and_back(cli, repo, commits):
    """C1 -> C3 has the changes of both steps; C3 -> C1 is its mirror image."""
    forward = diff_commits(cli, repo, commits, 2, 0)
    backward = diff_commits(cli, repo, commits, 0, 2)
    assert forward.code == backward.code == 1
    assert ("routes", "chat", "", "removed", "route",
            repr({"target": {"provider": "demo", "model": "m1"}}), None) in changes(forward)
    assert ("routes", "chat", "", "added", "route", None,
            repr({"target": {"provider": "demo", "model": "m1"}})) in changes(backward)
    mirrored = {(s, n, p, {"added": "removed", "removed": "added"}.get(k, k), w, new, old)
                for s, n, p, k, w, old, new in changes(forward)}
    assert mirrored == changes(backward)


def test_no_change_exits_zero(cli, repo, commits):
    """A file identical (semantically) to the other side: exit 0 and 'no changes'."""
    (repo.path / "gateway.yaml").write_text(C3 + "# only a comment\n")
    result = cli("diff", repo.path / "gateway.yaml", "--against", "git:HEAD")
    assert result.code == 0
    assert result.out.splitlines()[-1] == "no changes"


def test_errors_exit_two(cli, repo, commits, tmp_path):
    """An unknown revision, a missing file or a broken YAML file: exit 2 with a message."""
    path = repo.path / "gateway.yaml"
    bad_rev = cli("diff", path, "--against", "git:no-such-rev")
    assert bad_rev.code == 2 and "no-such-rev" in bad_rev.err
    missing = cli("diff", path, "--against", tmp_path / "nope.yaml")
    assert missing.code == 2 and "cannot read" in missing.err
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nroutes: [\n")
    result = cli("diff", broken, "--against", path)
    assert result.code == 2 and f"{broken}:3:1: YAML syntax error" in result.err


def test_human_output(cli, repo, commits):
    """The human diff groups by section and route, shows old -> new, where, and routing."""
    repo.git("checkout", "-q", commits[1], "--", "gateway.yaml")
    result = cli("diff", repo.path / "gateway.yaml", "--against", f"git:{commits[0]}")
    assert result.code == 1
    lines = result.out.splitlines()
    path = repo.path / "gateway.yaml"
    assert lines[0] == f"--- {path} at git {commits[0]}"
    assert lines[1] == f"+++ {path}"
    assert "routes: 1 added, 3 changed" in lines
    assert f"      weight     loadbalance.targets[0].weight: 3 -> 1   [{path}:19]" in lines
    assert "      routing    75% demo/a | 25% demo/b" in lines
    assert "                 -> 50% demo/a | 50% demo/b" in lines
    assert ("      secret     api_key: \"${OPENAI_API_KEY}\" -> \"${OPENAI_API_KEY_V2}\""
            f"   [{path}:7]") in lines
    assert f"      key        key_sha256 changed (the key was rotated; hashes are not shown)   [{path}:24]" in lines
    assert lines[-1] == "6 change(s)"


def test_diff_between_two_files_with_includes(cli, tmp_path):
    """Included files are part of the diff; locations name the included file."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "gateway.yaml").write_text(
            "version: 1\ninclude: routes.yaml\nproviders: {demo: {type: mock}}\n")
    (tmp_path / "a/routes.yaml").write_text("routes:\n  chat: {target: {provider: demo, model: x}}\n")
    (tmp_path / "b/routes.yaml").write_text("routes:\n  chat: {target: {provider: demo, model: y}}\n")
    result = cli("diff", tmp_path / "b/gateway.yaml", "--against", tmp_path / "a/gateway.yaml",
                 "--format", "json")
    assert result.code == 1
    (change,) = result.json["changes"]
    assert change["path"] == "target.model" and (change["old"], change["new"]) == ("x", "y")
    assert change["at"] == f"{tmp_path / 'b/routes.yaml'}:2"


def test_route_references_show_affected_routes(cli, tmp_path):
    """A route that only references a changed route is listed as affected, with its routing."""
    base = ("version: 1\nproviders: {demo: {type: mock}}\nroutes:\n"
            "  tiny: {target: {provider: demo, model: MODEL}}\n"
            "  pool: {loadbalance: {targets: [{target: {provider: demo, model: a}}, {route: tiny}]}}\n")
    (tmp_path / "old.yaml").write_text(base.replace("MODEL", "t1"))
    (tmp_path / "new.yaml").write_text(base.replace("MODEL", "t2"))
    result = cli("diff", tmp_path / "new.yaml", "--against", tmp_path / "old.yaml", "--format", "json")
    assert result.json["affected"] == {"pool": ["tiny"]}
    assert result.json["routing"]["pool"] == {"old": "50% demo/a | 50% demo/t1",
                                              "new": "50% demo/a | 50% demo/t2"}


def test_environment_overlays_are_diffed_when_no_environment_is_selected(cli, tmp_path):
    """Without --env the overlays are compared as their own section; with --env, the result."""
    text = ("version: 1\nproviders: {demo: {type: mock}}\nroutes:\n"
            "  chat: {target: {provider: demo, model: a}}\n"
            "environments:\n  prod:\n    routes:\n      chat: {target: {model: PROD}}\n")
    (tmp_path / "old.yaml").write_text(text.replace("PROD", "p1"))
    (tmp_path / "new.yaml").write_text(text.replace("PROD", "p2"))
    plain = cli("diff", tmp_path / "new.yaml", "--against", tmp_path / "old.yaml", "-f", "json")
    assert [(c["section"], c["name"], c["path"]) for c in plain.json["changes"]] == [
        ("environments", "prod", "routes.chat.target.model")]
    prod = cli("diff", tmp_path / "new.yaml", "--against", tmp_path / "old.yaml", "-f", "json",
               "--env", "prod")
    assert [(c["section"], c["name"], c["path"], c["old"], c["new"])
            for c in prod.json["changes"]] == [("routes", "chat", "target.model", "p1", "p2")]


def test_literal_secrets_are_never_shown(cli, tmp_path):
    """A literal secret value in a secret field is compared and shown masked only."""
    base = ("version: 1\nproviders:\n  o:\n    type: openai\n    api_key: KEY\n"
            "routes: {chat: {target: {provider: o, model: m}}}\n")
    (tmp_path / "old.yaml").write_text(base.replace("KEY", "${OPENAI_API_KEY}"))
    (tmp_path / "new.yaml").write_text(base.replace("KEY", LITERAL_SECRET))
    for fmt in ("human", "json"):
        result = cli("diff", tmp_path / "new.yaml", "--against", tmp_path / "old.yaml", "-f", fmt)
        assert result.code == 1
        assert "***" in result.out
