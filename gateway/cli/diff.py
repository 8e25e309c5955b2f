"""gateway diff: what would change, route by route and section by section.

    gateway diff [FILE] [--against running|VERSION|FILE|git:REV]

Exit status like diff(1): 0 nothing would change, 1 something would, 2 an error. Without
--against: the running gateway when one answers, else the last version it applied.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

from ..config.git import committed_blob
from ..config.diff import ConfigDiff, Side, diff, flow
from ..config.loader import Reader, load_bytes, read_file
from ..config.rollback import OtherConfig, check_owner
from ..config.versions import StoreError, Version, bundle_reader
from ..errors import ConfigErrors
from ._common import (
    AdminClient,
    AdminError,
    add_admin_options,
    add_config_options,
    add_format_option,
    fail,
    print_errors,
    print_json,
    require_config,
    store_for,
)


class SideError(Exception):
    """One side of the diff cannot be loaded; the message says why."""


def register(sub) -> None:
    p = sub.add_parser("diff", help="what would change, route by route; exit 1 if anything")
    p.add_argument("file", nargs="?", metavar="FILE", help="the new config (default: --config)")
    p.add_argument("--against", "-a", metavar="WHAT",
                   help="running | VERSION (a number) | FILE | git:REV (default: the running "
                        "gateway, else the last applied version)")
    add_config_options(p)
    add_format_option(p)
    add_admin_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = args.file or args.config
    if (missing := require_config(path)) is not None:
        return missing
    chosen = args.environment or os.environ.get("GATEWAY_ENV") or None
    try:
        old = against_side(args, path, chosen)  # a stored version keeps its own environment
        new = file_side(path, chosen or old.loaded.environment)
    except SideError as exc:
        return fail(str(exc))
    except ConfigErrors as exc:
        print_errors(exc)
        return fail("cannot diff: a config does not load (errors above)")
    result = diff(old, new)
    if args.format == "json":
        print_json(result.as_dict())
    else:
        render(result, sys.stdout)
    return 1 if result.changed else 0


# -- the sides ---------------------------------------------------------------------------------


def file_side(path: str, environment: str | None, label: str | None = None) -> Side:
    try:
        raw = read_file(path)
    except OSError as exc:
        raise SideError(f"cannot read {path}: {exc.strerror}") from None
    return Side(label or path, load_bytes(raw, path, environment=environment, keep_refs=True))


def version_side(version: Version, config_path: str, environment: str | None,
                 label: str) -> Side:
    loaded = load_bytes(version.text.encode(), config_path, environment=environment,
                        read=version.reader(config_path), keep_refs=True)
    return Side(label, loaded, located=False)


def against_side(args: argparse.Namespace, path: str, env: str | None) -> Side:
    what = args.against
    if what is None:
        try:
            return running_side(args, path, env)
        except SideError:
            return latest_side(args, path, env)
    if what == "running":
        return running_side(args, path, env)
    if what == "latest":
        return latest_side(args, path, env)
    if what.startswith("git:"):
        return git_side(path, what[4:] or "HEAD", env)
    if what.isdigit() and os.sep not in what:
        number = int(what)
        store = store_for(args.config, env)
        try:
            version = store.get(number)
        except StoreError as exc:
            raise SideError(str(exc)) from None
        if version is None:
            raise SideError(f"there is no config version {number}; `gateway history` lists them")
        if version.config is not None:  # an unknown config's version may be compared
            try:
                check_owner(store, version)
            except OtherConfig as exc:
                raise SideError(str(exc).split("; restoring")[0] + f"; compare with that "
                                f"config: gateway diff --config {version.path} --against "
                                f"{number}") from None
        return version_side(version, path, env if env else version.environment,
                            f"version {number} ({version.applied_at}, {version.source})")
    return file_side(what, env)


def latest_side(args: argparse.Namespace, path: str, env: str | None) -> Side:
    store = store_for(args.config, env)
    try:
        latest = store.latest()
    except StoreError as exc:
        raise SideError(str(exc)) from None
    if latest is None:
        raise SideError(f"nothing to compare with: no gateway answered and {store.path} holds "
                        "no versions; use --against FILE, --against git:REV or --url")
    return version_side(latest, path, env if env else latest.environment,
                        f"version {latest.number} (last applied, {latest.applied_at})")


def running_side(args: argparse.Namespace, path: str, env: str | None) -> Side:
    client = AdminClient(args.config, env, args.url, args.admin_token, timeout=3.0)
    try:
        listing = client.get("/admin/config/versions?limit=1")
        number = listing["running"]
        identity = store_for(args.config, env).config
        if listing.get("config", identity) != identity:
            raise SideError(f"the gateway at {client.url} serves another config "
                            f"({listing['config']}), not {identity}")
        shown = client.get(f"/admin/config/versions/{number}")
    except AdminError as exc:
        raise SideError(str(exc)) from None
    except (KeyError, TypeError):
        raise SideError(f"{client.url} did not answer like a gateway admin API") from None
    files = shown.get("files") or {}
    loaded = load_bytes(shown["text"].encode(), path,
                        environment=env if env else shown.get("environment"),
                        read=bundle_reader(path, files), keep_refs=True)
    return Side(f"running (version {number} at {client.url})", loaded, located=False)


def git_side(path: str, rev: str, env: str | None) -> Side:
    folder = os.path.dirname(os.path.abspath(path))

    def show(file: str) -> bytes:
        rel = os.path.relpath(os.path.abspath(file), folder).replace(os.sep, "/")
        done = committed_blob(folder, rev, rel)  # runs nothing the repository configures
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip().splitlines()
            raise FileNotFoundError(2, f"not in git {rev}: {reason[-1] if reason else ''}", file)
        return done.stdout

    reader: Reader = show
    try:
        raw = show(path)
    except FileNotFoundError as exc:
        raise SideError(f"{path}: {exc.strerror}") from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise SideError(f"cannot run git: {exc}") from None
    loaded = load_bytes(raw, path, environment=env, read=reader, keep_refs=True)
    return Side(f"{path} at git {rev}", loaded, located=False)


# -- human output ------------------------------------------------------------------------------

_SIGNS = {"added": "+", "removed": "-", "changed": "~"}


def render(result: ConfigDiff, out) -> None:
    print(f"--- {result.old}", file=out)
    print(f"+++ {result.new}", file=out)
    if not result.changed:
        print("no changes", file=out)
        return
    routes = result.routes()
    counts = ", ".join(f"{len(v)} {k}" for k, v in routes.items() if v)
    by_section: dict[str, list] = {}
    for change in result.changes:
        by_section.setdefault(change.section, []).append(change)
    for section, changes in by_section.items():
        header = f"{section}: {counts}" if section == "routes" else f"{section}:"
        print(header, file=out)
        _render_section(result, section, changes, out)
        if section != "routes":
            continue
        for name, via in result.affected.items():
            print(f"  ~ {name}   (unchanged itself; it uses {', '.join(via)})", file=out)
            _routing_lines(result, name, out)
    print(f"{len(result.changes)} change(s)", file=out)


def _render_section(result: ConfigDiff, section: str, changes: list, out) -> None:
    entries: dict[Any, list] = {}
    for change in changes:
        entries.setdefault(change.name, []).append(change)
    for name, items in entries.items():
        if name is None:
            for c in items:
                print(f"  {_SIGNS[c.kind]} {_line(c)}{_at(c)}", file=out)
            continue
        whole = [c for c in items if c.path == ""]
        if whole and whole[0].kind != "changed":
            c = whole[0]
            print(f"  {_SIGNS[c.kind]} {name}{_at(c)}", file=out)
            if section != "routes":
                value = c.new if c.kind == "added" else c.old
                print(f"      {_short(flow(value))}", file=out)
        else:
            print(f"  ~ {name}", file=out)
            for c in items:
                print(f"      {c.what:10} {_line(c)}{_at(c)}", file=out)
        if section == "routes":
            _routing_lines(result, name, out)


def _routing_lines(result: ConfigDiff, name: str, out) -> None:
    routing = result.routing.get(name)
    if not routing:
        return
    old, new = routing.get("old"), routing.get("new")
    if old is None:
        print(f"      {'routing':10} {new}", file=out)
    elif new is None:
        print(f"      {'routing':10} was: {old}", file=out)
    elif old != new:
        print(f"      {'routing':10} {old}", file=out)
        print(f"      {'':10} -> {new}", file=out)


def _line(c) -> str:
    label = c.path or "(whole entry)"
    if c.what == "key" and c.kind == "changed":
        return f"{label} changed (the key was rotated; hashes are not shown)"
    if c.kind == "added":
        return f"{label}: {_short(flow(c.new))} (added)"
    if c.kind == "removed":
        return f"{label}: {_short(flow(c.old))} (removed)"
    return f"{label}: {_short(flow(c.old))} -> {_short(flow(c.new))}"


def _at(c) -> str:
    return f"   [{c.at}]" if c.at else ""


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."
