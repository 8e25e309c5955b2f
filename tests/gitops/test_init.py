"""`gateway init`: a starter config from the example templates, never overwriting by accident."""

from __future__ import annotations

from pathlib import Path

from gateway.config.compiler import compile_file

ROOT = Path(__file__).resolve().parents[2]


def test_init_writes_a_valid_starter(cli, tmp_path):
    """The default template is written, validates, and points editors at the schema."""
    out = tmp_path / "gateway.yaml"
    result = cli("init", "--output", out)
    assert result.code == 0 and f"wrote {out} from template 'minimal'" in result.out
    text = out.read_text()
    first = text.splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    assert (out.parent / first.split("=", 1)[1]).resolve() == (ROOT / "schemas" / "gateway.schema.json").resolve()
    assert "chat" in compile_file(str(out)).routes


def test_init_refuses_to_overwrite_without_force(cli, tmp_path):
    """An existing file is kept unless --force is given."""
    out = tmp_path / "gateway.yaml"
    out.write_text("mine\n")
    refused = cli("init", "--output", out, "--template", "fallback")
    assert refused.code == 1 and "already exists" in refused.err and refused.out == ""
    assert out.read_text() == "mine\n"
    assert cli("init", "--output", out, "--template", "fallback", "--force").code == 0
    assert "fallback" in out.read_text() and "smart" in compile_file(str(out)).routes


def test_init_lists_templates_and_rejects_unknown_ones(cli, tmp_path):
    """--list names every example; an unknown template gets a suggestion and exit 2."""
    listing = cli("init", "--list")
    names = [line.split()[0] for line in listing.out.splitlines()]
    assert {"minimal", "fallback", "loadbalance", "conditional", "canary"} <= set(names)
    unknown = cli("init", "--template", "canery", "--output", tmp_path / "x.yaml")
    assert unknown.code == 2 and "did you mean 'canary'?" in unknown.err
    assert not (tmp_path / "x.yaml").exists()


def test_init_writes_the_files_a_template_includes(cli, tmp_path):
    """A template with include: comes with its included files, so it validates where written;
    an existing included file is kept unless --force."""
    out = tmp_path / "gateway.yaml"
    assert cli("init", "--output", out, "--template", "environments").code == 0
    included = tmp_path / "shared" / "providers.yaml"
    assert included.read_text() == (ROOT / "examples/configs/shared/providers.yaml").read_text()
    assert "smart" in compile_file(str(out)).routes
    original = included.read_text()
    included.write_text("mine\n")
    kept = cli("init", "--output", tmp_path / "other.yaml", "--template", "environments")
    assert kept.code == 0 and "kept the existing" in kept.err and included.read_text() == "mine\n"
    assert cli("init", "--output", out, "--template", "environments", "--force").code == 0
    assert included.read_text() == original
