"""gateway init: write a starter gateway.yaml from one of the example configs.

    gateway init [--template NAME] [--output FILE] [--force] [--list]

Templates are the files in examples/configs/ (minimal, fallback, loadbalance, conditional,
canary, ...), shipped inside the package as gateway/templates (a link to that folder in a
checkout, copies in a wheel). Files a template includes are written beside it. An existing
file is never overwritten without --force.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path

from ..config.loader import load_bytes
from ..config.rollback import write_atomically
from ..errors import ConfigErrors

PACKAGE = Path(__file__).resolve().parents[1]
TEMPLATES = PACKAGE / "templates"
# The schema at its public path in a checkout (schemas/), else the copy inside the package.
SCHEMA = next((p for p in (PACKAGE.parent / "schemas" / "gateway.schema.json",
                           PACKAGE / "config" / "gateway.schema.json") if p.is_file()))
SCHEMA_LINE = "# yaml-language-server: $schema="

# Used when the package is installed without its examples/ folder.
BUILTIN_MINIMAL = """\
# The smallest useful config: one route answered by the built-in offline mock provider.
#   gateway serve --config gateway.yaml
version: 1
providers:
  demo: {type: mock}
routes:
  chat: {target: {provider: demo, model: mock-1}}
"""


def register(sub) -> None:
    p = sub.add_parser("init", help="write a starter gateway.yaml from a template")
    p.add_argument("--template", "-t", default="minimal", metavar="NAME",
                   help="a file name from examples/configs without .yaml (default: minimal)")
    p.add_argument("--output", "-o", default="gateway.yaml", help="where to write it")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--list", action="store_true", help="list the templates and exit")
    p.set_defaults(func=run)


def templates() -> dict[str, Path | None]:
    found: dict[str, Path | None] = {p.stem: p for p in sorted(TEMPLATES.glob("*.yaml"))}
    found.setdefault("minimal", None)  # built in
    return found


def run(args: argparse.Namespace) -> int:
    available = templates()
    if args.list:
        for name, path in available.items():
            print(f"{name:20} {_description(path)}")
        return 0
    if args.template not in available:
        close = difflib.get_close_matches(args.template, list(available), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        print(f"gateway: no template '{args.template}'{hint}; choose one of: "
              f"{', '.join(available)} (gateway init --list)", file=sys.stderr)
        return 2
    if os.path.exists(args.output) and not args.force:
        print(f"gateway: {args.output} already exists; not overwritten (use --force to replace "
              "it, or --output to write elsewhere)", file=sys.stderr)
        return 1
    path = available[args.template]
    text = path.read_text("utf-8") if path is not None else BUILTIN_MINIMAL
    write_atomically(args.output, _retarget_schema(text, args.output))
    for name, included in _includes(path):
        target = os.path.join(os.path.dirname(os.path.abspath(args.output)), name)
        if os.path.exists(target) and not args.force:
            print(f"gateway: kept the existing {target} (the template includes its own; "
                  "--force replaces it)", file=sys.stderr)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        write_atomically(target, included)
    print(f"wrote {args.output} from template '{args.template}'. Next:\n"
          f"  gateway validate {args.output}\n"
          f"  gateway serve --config {args.output}")
    return 0


def _retarget_schema(text: str, output: str) -> str:
    """Point the editor schema header at schemas/gateway.schema.json from the new file's
    folder (or drop it when the schema is not around)."""
    lines = text.splitlines(keepends=True)
    if lines and lines[0].startswith(SCHEMA_LINE):
        lines = lines[1:]
    if SCHEMA.is_file():
        folder = os.path.dirname(os.path.abspath(output))
        relative = os.path.relpath(SCHEMA, folder).replace(os.sep, "/")
        relative = relative if relative.startswith(".") else "./" + relative
        lines.insert(0, f"{SCHEMA_LINE}{relative}\n")
    return "".join(lines)


def _includes(path: Path | None) -> list[tuple[str, str]]:
    """(name relative to the template's folder, text) of every file the template includes."""
    if path is None:
        return []
    try:
        loaded = load_bytes(path.read_bytes(), str(path), env={}, keep_refs=True)
    except ConfigErrors:
        return []
    return [(f.name, f.text) for f in loaded.includes]


def _description(path: Path | None) -> str:
    if path is None:
        return "one route on the offline mock provider (built in)"
    for line in path.read_text("utf-8").splitlines():
        if line.startswith("#") and not line.startswith(SCHEMA_LINE):
            return line.lstrip("# ").strip()
    return ""
