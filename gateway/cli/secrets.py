"""gateway secrets: provider secrets in the encrypted vault of the config's data directory.

    gateway secrets set NAME            # the value from stdin when piped, else a hidden prompt
    gateway secrets list                # names and dates only
    gateway secrets delete NAME
    gateway secrets rotate-master       # re-encrypt everything under a new master key

A value is never taken from the command line: it would be visible in `ps`, /proc and the
shell's history. Configs refer to a secret as ``secret:NAME`` (docs/secrets.md).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from ..config.secrets import find_references
from ..config.suggest import did_you_mean
from ..vault import (
    ENV_KEY,
    ENV_NEW_PASSPHRASE,
    ENV_PASSPHRASE,
    MasterKey,
    UnknownSecret,
    Vault,
    VaultError,
)
from ._common import (
    add_format_option,
    add_location_args,
    data_dir_of,
    fail,
    print_json,
    quiet_load,
    require_config,
)


def register(sub) -> None:
    p = sub.add_parser("secrets", help="manage provider secrets in the encrypted vault",
                       description="Provider secrets, encrypted in the vault of the config's "
                                   "data directory; configs refer to them as secret:NAME.")
    p.set_defaults(func=lambda args: _usage(p))
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    s = actions.add_parser("set", help="store a secret (value from stdin or a hidden prompt)")
    s.add_argument("name", metavar="NAME")
    s.add_argument("stray", nargs="*", help=argparse.SUPPRESS)  # a value typed by mistake
    add_location_args(s)
    s.set_defaults(func=run_set)

    ls = actions.add_parser("list", help="list secret names and dates (never values)")
    add_location_args(ls)
    add_format_option(ls)
    ls.set_defaults(func=run_list)

    d = actions.add_parser("delete", help="delete a secret")
    d.add_argument("name", metavar="NAME")
    add_location_args(d)
    d.set_defaults(func=run_delete)

    r = actions.add_parser("rotate-master", help="re-encrypt every secret under a new master key")
    add_location_args(r)
    r.set_defaults(func=run_rotate)


def _usage(parser) -> int:
    parser.print_help(sys.stderr)
    return 2


def vault_for(args: argparse.Namespace) -> Vault:
    """The vault in --data-dir, else in the config's server.data_dir."""
    return Vault(data_dir_of(args.config, args.data_dir, args.environment))


# -- set -------------------------------------------------------------------------------------

def run_set(args: argparse.Namespace) -> int:
    if args.stray:
        # Do not echo what was typed: it is probably the secret.
        return fail("the value of a secret is never taken from the command line (it would be "
                    "visible in `ps` and your shell history; remove it from the history). Pipe "
                    f"it in: `printf %s \"$VALUE\" | gateway secrets set {args.name}`, or run "
                    f"`gateway secrets set {args.name}` and type it at the hidden prompt")
    vault = vault_for(args)
    try:
        value = read_value(args.name)
    except ValueError as exc:
        return fail(str(exc), 1)
    except (KeyboardInterrupt, EOFError):
        return fail("cancelled; nothing was stored", 1)
    try:
        created = vault.set(args.name, value)
    except VaultError as exc:
        return fail(str(exc), 1)
    if vault.created_key_file:
        print(f"created a new master key in {vault.key_path} (mode 0600): back it up apart "
              "from the vault; without it the secrets cannot be decrypted", file=sys.stderr)
    verb = "stored" if created else "updated"
    print(f"secret '{args.name}' {verb} in {vault.path}; refer to it as secret:{args.name}")
    if not created:
        print("running gateways use the new value once they recompile the config: POST "
              "/admin/reload?force=1, or restart them (an unchanged config file is not "
              "recompiled)", file=sys.stderr)
    return 0


def read_value(name: str) -> str:
    """The value from stdin when it is not a terminal, else typed twice at a hidden prompt.
    Trailing line breaks (from `echo`) are dropped; an empty value is refused."""
    if not sys.stdin.isatty():
        raw = sys.stdin.buffer.read()
        try:
            value = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise ValueError("the value on stdin is not UTF-8 text; nothing was stored") from None
        if not value:
            raise ValueError(f"refusing to store an empty value for '{name}' (stdin was empty: "
                             "did the command before the pipe fail?)")
        return value
    value = getpass.getpass(f"value of secret '{name}' (input hidden): ")
    if not value:
        raise ValueError(f"refusing to store an empty value for '{name}'")
    if getpass.getpass("type it again: ") != value:
        raise ValueError("the two entries differ; nothing was stored")
    return value


# -- list and delete -------------------------------------------------------------------------

def run_list(args: argparse.Namespace) -> int:
    if not args.data_dir and (missing := require_config(args.config)) is not None:
        return missing
    vault = vault_for(args)
    try:
        secrets = vault.list()
    except VaultError as exc:
        return fail(str(exc), 1)
    if args.format == "json":
        print_json({"vault": vault.path, "secrets": [s.as_dict() for s in secrets]})
        return 0
    if not secrets:
        print(f"no secrets in {vault.path}" if vault.exists() else f"no vault at {vault.path} "
              "yet (gateway secrets set NAME creates it)")
        return 0
    width = max(len("name"), *(len(s.name) for s in secrets))
    print(f"{len(secrets)} secret(s) in {vault.path}")
    print(f"  {'name':{width}}  {'created (UTC)':20}  updated (UTC)")
    for s in secrets:
        print(f"  {s.name:{width}}  {s.created_at:20}  {s.updated_at}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    vault = vault_for(args)
    try:
        vault.delete(args.name)
    except UnknownSecret as exc:
        hint = did_you_mean(args.name, exc.names)
        return fail(f"{exc}" + (f" ({hint})" if hint else ""), 1)
    except VaultError as exc:
        return fail(str(exc), 1)
    print(f"secret '{args.name}' deleted from {vault.path}")
    loaded = quiet_load(args.config, args.environment) if not args.data_dir else None
    if loaded is not None and any(n == args.name for _, n in find_references(loaded.data)):
        print(f"warning: {args.config} still refers to secret:{args.name}; it will not load "
              "until the reference is changed or the secret set again", file=sys.stderr)
    return 0


# -- rotate-master ---------------------------------------------------------------------------

def run_rotate(args: argparse.Namespace) -> int:
    vault = vault_for(args)
    printed: list[bool] = []

    def announce(new: MasterKey) -> None:
        if new.mode == "env":  # shown once, before the commit: if printing fails, no change
            sys.stdout.write(new.encoded() + "\n")
            sys.stdout.flush()
            printed.append(True)

    try:
        rotation = vault.rotate(before_commit=announce)
    except VaultError as exc:
        if printed:
            return fail(f"{exc}\nthe rotation failed: the vault is unchanged and still opens with "
                        f"the old {ENV_KEY}; discard the key printed above", 1)
        return fail(str(exc), 1)
    except OSError as exc:  # stdout closed while printing the new key
        return fail(f"cannot show the new master key ({exc.strerror or exc}); the vault is "
                    "unchanged", 1)
    done = f"re-encrypted {rotation.secrets} secret(s) in {vault.path} under a new master key"
    if rotation.mode == "file":
        print(f"{done}, written to {rotation.key_path} (mode 0600). Back up the new key file "
              "(apart from the vault): the old key no longer opens it. Running gateways read it "
              "at their next compile.")
    elif rotation.mode == "env":
        print(f"{done}.\nThe new key is printed above, ONCE. Set {ENV_KEY} to it everywhere the "
              "gateway and this CLI run (and in your secret manager), then restart those "
              "gateways: the old key no longer opens the vault.", file=sys.stderr)
    else:
        print(f"{done}, derived from {ENV_NEW_PASSPHRASE} with a new salt. Set "
              f"{ENV_PASSPHRASE} to the new passphrase everywhere the gateway and this CLI run, "
              "then restart those gateways: the old passphrase no longer opens the vault.")
    return 0

