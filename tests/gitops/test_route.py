"""`gateway route` (a dry run through the compiled graph) and `gateway test` (golden cases)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
version: 1
providers:
  demo: {type: mock}
  openai: {type: openai, api_key: "${OPENAI_API_KEY}"}
routes:
  smart:
    fallback:
      on_status: [429, 503, timeout]
      targets:
        - target: {provider: openai, model: gpt-4o, retry: {attempts: 3}}
        - target: {provider: demo, model: backup}
  tiny: {target: {provider: demo, model: tiny}}
  cheap:
    loadbalance:
      targets:
        - {weight: 3, target: {provider: demo, model: small}}
        - {weight: 1, route: tiny}
  tiered:
    conditional:
      rules:
        - when: {metadata.tier: premium}
          then: {route: smart}
        - when: {params.max_tokens: {$gt: 4000}}
          then: {target: {provider: demo, model: long}}
      default: {route: cheap}
  strict:
    conditional:
      rules:
        - when: {metadata.team: research}
          then: {route: tiny}
  rollout:
    canary:
      percent: 20
      stable: {route: smart}
      canary: {target: {provider: demo, model: candidate}}
keys:
  research:
    key_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
    routes: [smart, cheap, tiered, strict, rollout, tiny]
    metadata: {team: research}
  ops:
    key_sha256: 8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    return path


def route(cli, config: Path, *args: str):
    return cli("route", *args, "--config", config, "--key", "ops")


def test_fallback_route(cli, config):
    """A fallback lists its targets in order, with each target's retry and timeout policy."""
    human = route(cli, config, "smart")
    assert human.code == 0
    lines = human.out.splitlines()
    assert lines[0] == f"route smart  ({config}, key ops)"
    assert "  decided by  $.routes.smart.fallback" in lines
    assert ("    $.routes.smart.fallback  fallback: tries 2 children in order; moves on after: "
            "429 503 timeout") in lines
    assert "  tried in order" in lines
    assert "    100.0%  openai/gpt-4o -> demo/backup" in lines
    assert any(line.startswith("    openai/gpt-4o  retry 3 attempt(s) on ") for line in lines)
    data = route(cli, config, "smart", "--format", "json").json
    assert data["alternatives"] == [{"probability": 1.0, "targets": ["openai/gpt-4o", "demo/backup"],
                                     "route": "smart", "error": None}]
    assert data["targets"][0]["retry"]["attempts"] == 3
    assert "auth" in data["middleware"]  # keys are declared: the auth middleware runs


def test_loadbalance_route(cli, config):
    """A weighted balancer gives each target's probability; route references are followed."""
    human = route(cli, config, "cheap")
    lines = human.out.splitlines()
    assert "  alternatives (probability: targets tried in order)" in lines
    assert "     75.0%  demo/small" in lines
    assert "     25.0%  demo/tiny   (route tiny)" in lines
    data = route(cli, config, "cheap", "-f", "json").json
    assert data["first_targets"] == [{"target": "demo/small", "probability": 0.75},
                                     {"target": "demo/tiny", "probability": 0.25}]
    assert data["decided_by"] == "$.routes.cheap.loadbalance"
    assert data["final_route"] is None  # cheap or tiny, depending on the draw


def test_drained_target_shows_zero_percent(cli, tmp_path):
    """A weight-0 target is listed at 0%, and the step says it is drained."""
    path = tmp_path / "gateway.yaml"
    path.write_text("version: 1\nproviders:\n  demo: {type: mock}\nroutes:\n  cheap:\n"
                    "    loadbalance:\n      targets:\n"
                    "        - {weight: 3, target: {provider: demo, model: small}}\n"
                    "        - {weight: 0, target: {provider: demo, model: old}}\n")
    human = cli("route", "cheap", "--config", path)
    lines = human.out.splitlines()
    assert human.code == 0
    assert "    100.0%  demo/small" in lines and "      0.0%  demo/old" in lines
    assert any("weighted: 3, 0; 1 drained (weight 0)" in line for line in lines)
    data = cli("route", "cheap", "--config", path, "-f", "json").json
    assert data["first_targets"] == [{"target": "demo/small", "probability": 1.0},
                                     {"target": "demo/old", "probability": 0.0}]


@pytest.mark.parametrize("args, decided_by, targets", [
    (("--metadata", "tier=premium"), "$.routes.tiered.conditional.rules[0]",
     ["openai/gpt-4o", "demo/backup"]),
    (("--param", "max_tokens=5000"), "$.routes.tiered.conditional.rules[1]", ["demo/long"]),
    (("--param", "max_tokens=100"), "$.routes.cheap.loadbalance", None),  # default: cheap
])
def test_conditional_route(cli, config, args, decided_by, targets):
    """The last choice on the way decides; --param values are typed (5000 > 4000)."""
    data = route(cli, config, "tiered", *args, "-f", "json").json
    assert data["decided_by"] == decided_by
    if targets is not None:
        assert [a["targets"] for a in data["alternatives"]] == [targets]
    else:
        assert {a["targets"][0] for a in data["alternatives"]} == {"demo/small", "demo/tiny"}


def test_conditional_uses_the_keys_metadata(cli, config):
    """The key's metadata takes part in conditions, like in the server."""
    data = cli("route", "strict", "-c", config, "--key", "research", "-f", "json").json
    assert data["status"] == 200 and data["final_route"] == "tiny"
    refused = route(cli, config, "strict", "-f", "json")
    assert refused.code == 1
    assert refused.json["status"] == 400 and "no_route_matched" in refused.json["error"]


def test_canary_route(cli, config):
    """A canary splits by percent; a sticky value always lands on one arm."""
    human = route(cli, config, "rollout")
    lines = human.out.splitlines()
    assert "     80.0%  openai/gpt-4o -> demo/backup   (route smart)" in lines
    assert "     20.0%  demo/candidate" in lines
    sticky = route(cli, config, "rollout", "-m", "user=alice", "-f", "json").json
    assert len(sticky["alternatives"]) == 1
    assert "sticky value 'alice' always lands on the" in sticky["steps"][0]["decision"]


@pytest.mark.parametrize("args, status, message", [
    (("nope",), 404, "model_not_found: no route 'nope'"),
    (("smart", "--key", "nobody"), 401, "invalid_api_key"),
    (("smart",), 401, "missing_api_key"),
])
def test_rejections(cli, config, args, status, message):
    """Unknown model 404, unknown or missing key 401: exit 1 and the reason."""
    result = cli("route", *args, "--config", config, "-f", "json")
    assert result.code == 1
    assert result.json["status"] == status and result.json["error"].startswith(message)


def test_key_not_allowed_human(cli, tmp_path):
    """A key on a route it may not use: 403 said plainly."""
    path = tmp_path / "g.yaml"
    path.write_text(CONFIG.replace("routes: [smart, cheap, tiered, strict, rollout, tiny]",
                                   "routes: [cheap]"))
    result = cli("route", "smart", "-c", path, "-k", "research")
    assert result.code == 1
    assert result.out.splitlines()[-1] == ("  rejected: 403 route_not_allowed: key 'research' "
                                           "may not use route 'smart'")


def test_bad_pairs_and_bad_config(cli, config, tmp_path):
    """A malformed --metadata and a config with errors exit 2 with a message."""
    assert cli("route", "smart", "-c", config, "-m", "novalue").code == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nroutes: {a: {target: {provider: x, model: m}}}\n")
    result = cli("route", "a", "-c", broken)
    assert result.code == 2 and f"{broken}:2:33: $.routes.a.target.provider" in result.err


CASES = """\
config: gateway.yaml
cases:
  - name: premium goes to smart
    model: tiered
    key: ops
    metadata: {tier: premium}
    expect:
      route: smart
      first_target: openai/gpt-4o
      targets: [openai/gpt-4o, demo/backup]
      decided_by: $.routes.tiered.conditional.rules[0]
  - name: cheap is split 3 to 1
    model: cheap
    key: ops
    expect: {shares: {demo/small: 75, demo/tiny: 25}}
  - name: research may not use smart directly
    model: smart
    key: nobody
    expect: {rejected: 401}
  - name: canary
    model: rollout
    key: ops
    expect: {shares: {openai/gpt-4o: 80, demo/candidate: 20}}
"""


def test_gateway_test_passes(cli, config):
    """Every case matches: exit 0 and one ok line per case."""
    cases = config.parent / "routing-tests.yaml"
    cases.write_text(CASES)
    result = cli("test", cases)
    assert result.code == 0, result.out
    assert result.out.splitlines()[-1] == "4 passed, 0 failed"
    assert "  ok    premium goes to smart" in result.out.splitlines()


def test_gateway_test_default_file_beside_the_config(cli, config):
    """Without a cases argument, routing-tests.yaml next to --config is used."""
    (config.parent / "routing-tests.yaml").write_text(CASES)
    assert cli("test", "--config", config).code == 0


def test_gateway_test_failures_are_readable(cli, config):
    """Mismatches exit 1 and say, per field, what was expected and what happens."""
    cases = config.parent / "routing-tests.yaml"
    cases.write_text(CASES.replace("route: smart", "route: cheap")
                     .replace("demo/small: 75", "demo/small: 70")
                     .replace("rejected: 401", "rejected: 403"))
    result = cli("test", cases)
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[-1] == "1 passed, 3 failed"
    assert f"  FAIL  premium goes to smart   [{cases}:3]" in lines
    assert "          route: expected cheap" in lines
    assert "                 got      smart" in lines
    assert "          shares: expected 70% demo/small, 25% demo/tiny" in lines
    assert "                  got      75% demo/small, 25% demo/tiny" in lines
    assert "          rejected: expected 403" in lines
    data = cli("test", cases, "-f", "json").json
    assert (data["passed"], data["failed"]) == (1, 3)
    assert data["results"][0]["failures"] == [{"field": "route", "expected": "cheap", "got": "smart"}]


def test_gateway_test_routed_when_rejection_expected_and_vice_versa(cli, config):
    """A case expecting a route that gets refused (and the reverse) fails with the reason."""
    cases = config.parent / "cases.yaml"
    cases.write_text("config: gateway.yaml\ncases:\n"
                     "  - {model: smart, expect: {first_target: openai/gpt-4o}}\n"
                     "  - {model: smart, key: ops, expect: {rejected: 403}}\n")
    result = cli("test", cases)
    assert result.code == 1
    assert "          routed: expected a routed request" in result.out
    assert "rejected 401: missing_api_key" in result.out
    assert "got      routed: 100% openai/gpt-4o -> demo/backup" in result.out


def test_gateway_test_bad_cases_file(cli, config):
    """Unknown keys and missing fields in a cases file: exit 2 with FILE:LINE:COL."""
    cases = config.parent / "cases.yaml"
    cases.write_text("cases:\n  - model: smart\n    expcet: {rejected: 401}\n")
    result = cli("test", cases, "--config", config)
    assert result.code == 2
    assert f"{cases}:3:5: $.cases[0].expcet: unknown key 'expcet' (did you mean 'expect'?)" in result.err
    assert f"{cases}:2:5: $.cases[0]: missing required key 'expect'" in result.err


def test_shipped_example_cases_pass(cli):
    """examples/routing-tests.yaml passes against the example configs."""
    result = cli("test", ROOT / "examples" / "routing-tests.yaml")
    assert result.code == 0, result.out
    assert result.out.splitlines()[-1].endswith(" passed, 0 failed")
