"""gateway.vault: encryption at rest, the three master-key modes, file modes, rotation."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import pytest

import gateway.vault as vault_module
from gateway.vault import MasterKey, UnknownSecret, Vault, VaultError, WrongKeyError, parse_key

from .helpers import ROOT, clean_env, new_key

VALUES = {"openai": "sk-live-0123456789abcdef", "anthropic": "sk-ant-XYZ-987", "aws": "wJalr/K7+MDENG"}
PASSPHRASE = "correct horse battery staple"


def filled(folder: Path, env: dict) -> Vault:
    vault = Vault(str(folder), env)
    for name, value in VALUES.items():
        vault.set(name, value)
    return vault


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- round trip and storage --------------------------------------------------------------------

def test_round_trip_with_env_key(tmp_path: Path):
    """Values come back as stored; the file holds names and dates but no value."""
    env = {"GATEWAY_MASTER_KEY": new_key()}
    filled(tmp_path, env)
    again = Vault(str(tmp_path), env)
    assert again.resolve(VALUES) == (VALUES, sorted(VALUES))
    assert again.get("aws") == VALUES["aws"]
    raw = (tmp_path / "vault.json").read_bytes()
    assert not any(v.encode() in raw for v in VALUES.values())
    doc = json.loads(raw)
    assert set(doc["secrets"]["openai"]) == {"ciphertext", "created_at", "updated_at"}
    assert mode_of(tmp_path / "vault.json") == 0o600
    assert not (tmp_path / "master.key").exists()


def test_update_keeps_created_at_and_list_shows_no_values(tmp_path: Path, monkeypatch):
    """Setting a name again replaces the value, keeps created_at and moves updated_at."""
    env = {"GATEWAY_MASTER_KEY": new_key()}
    vault = filled(tmp_path, env)
    first = {s.name: s for s in vault.list()}["openai"]
    later = time.time() + 61  # the update happens a minute later (timestamps are to the second)
    monkeypatch.setattr(vault_module, "_now", lambda: vault_module.iso_utc(later))
    assert vault.set("openai", "sk-new") is False
    second = {s.name: s for s in vault.list()}["openai"]
    assert second.created_at == first.created_at and second.updated_at > first.updated_at
    assert vault.get("openai") == "sk-new"
    assert [s.as_dict().keys() for s in vault.list()][0] == {"name", "created_at", "updated_at"}


def test_delete_and_unknown_names(tmp_path: Path):
    """delete removes one secret; unknown names raise UnknownSecret listing the known ones."""
    vault = filled(tmp_path, {"GATEWAY_MASTER_KEY": new_key()})
    vault.delete("aws")
    assert vault.names() == ["anthropic", "openai"]
    with pytest.raises(UnknownSecret) as info:
        vault.delete("aws")
    assert info.value.names == ["anthropic", "openai"]
    with pytest.raises(UnknownSecret):
        vault.get("nope")


def test_invalid_names_and_empty_values_refused(tmp_path: Path):
    """Names follow the config's name rules; an empty value is never stored."""
    vault = Vault(str(tmp_path), {"GATEWAY_MASTER_KEY": new_key()})
    for bad in ("", "-x", "has space", "a/b", "x" * 129):
        with pytest.raises(VaultError, match="not a valid secret name"):
            vault.set(bad, "v")
    with pytest.raises(VaultError, match="empty value"):
        vault.set("ok", "")
    assert not (tmp_path / "vault.json").exists()


def test_ciphertext_moved_to_another_name_is_refused(tmp_path: Path):
    """The name is sealed with the value: swapping ciphertexts in the file is detected."""
    env = {"GATEWAY_MASTER_KEY": new_key()}
    filled(tmp_path, env)
    path = tmp_path / "vault.json"
    doc = json.loads(path.read_text())
    doc["secrets"]["openai"]["ciphertext"] = doc["secrets"]["anthropic"]["ciphertext"]
    path.write_text(json.dumps(doc))
    with pytest.raises(VaultError, match="damaged or edited") as info:
        Vault(str(tmp_path), env).get("openai")
    assert VALUES["anthropic"] not in str(info.value)


def test_damaged_or_newer_file_is_a_clear_error(tmp_path: Path):
    """A file that is not a vault, or of a newer format, is refused with what to do."""
    path = tmp_path / "vault.json"
    path.write_text("{not json")
    with pytest.raises(VaultError, match="damaged .*restore it from a backup"):
        Vault(str(tmp_path), {}).list()
    path.write_text(json.dumps({"format": "bodhi-gateway-vault", "version": 9, "secrets": {}}))
    with pytest.raises(VaultError, match="newer gateway"):
        Vault(str(tmp_path), {}).list()


# -- GATEWAY_MASTER_KEY ------------------------------------------------------------------------

def test_env_key_accepts_base64_urlsafe_and_hex():
    """32 bytes as standard base64, URL-safe base64 or hex all parse to the same key."""
    raw = bytes(range(200, 232))
    for text in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
                 raw.hex(), raw.hex().upper(), "  " + raw.hex() + "\n"):
        assert parse_key(text, "GATEWAY_MASTER_KEY") == raw


@pytest.mark.parametrize("text", ["abc", "sk-live-notakeyatall-0123456789",
                                  base64.b64encode(b"x" * 31).decode(), "0" * 63, "g" * 64])
def test_bad_env_key_is_a_clear_error_without_echo(tmp_path: Path, text: str):
    """Anything but 32 bytes of base64/hex is refused by name, and the text is not echoed."""
    with pytest.raises(VaultError) as info:
        Vault(str(tmp_path), {"GATEWAY_MASTER_KEY": text}).set("a", "v")
    message = str(info.value)
    assert message.startswith("GATEWAY_MASTER_KEY is not a valid master key")
    assert "openssl rand -base64 32" in message
    assert text not in message


def test_wrong_master_key_is_a_clear_error(tmp_path: Path):
    """Another key gets the documented message naming the vault, and no secret."""
    filled(tmp_path, {"GATEWAY_MASTER_KEY": new_key()})
    for action in (lambda v: v.get("openai"), lambda v: v.set("new", "value")):
        with pytest.raises(WrongKeyError) as info:
            action(Vault(str(tmp_path), {"GATEWAY_MASTER_KEY": new_key()}))
        message = str(info.value)
        assert message.startswith(f"the vault at {tmp_path / 'vault.json'} cannot be decrypted "
                                  "with this master key: was GATEWAY_MASTER_KEY changed?")
        assert not any(v in message for v in VALUES.values())


def test_wrong_master_key_in_the_cli_has_no_traceback(tmp_path: Path):
    """`gateway secrets set` against a vault of another key: one clear line, exit 1."""
    filled(tmp_path, {"GATEWAY_MASTER_KEY": new_key()})
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "secrets", "set", "x", "--data-dir", str(tmp_path)],
        input="value", capture_output=True, text=True, timeout=60, cwd=ROOT,
        env=clean_env(GATEWAY_MASTER_KEY=new_key()))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "cannot be decrypted with this master key: was GATEWAY_MASTER_KEY changed?" in result.stderr


def test_both_key_variables_set_is_refused(tmp_path: Path):
    """GATEWAY_MASTER_KEY and GATEWAY_MASTER_PASSPHRASE together are ambiguous."""
    env = {"GATEWAY_MASTER_KEY": new_key(), "GATEWAY_MASTER_PASSPHRASE": PASSPHRASE}
    with pytest.raises(VaultError, match="set only the one"):
        Vault(str(tmp_path), env).set("a", "v")


# -- key file ----------------------------------------------------------------------------------

def test_key_file_created_0600_on_first_use(tmp_path: Path):
    """Without variables the first write makes master.key, 0600 even with umask 000."""
    old = os.umask(0)
    try:
        vault = filled(tmp_path / "data", {})
    finally:
        os.umask(old)
    key_file = tmp_path / "data" / "master.key"
    assert vault.created_key_file
    assert mode_of(key_file) == 0o600
    assert mode_of(tmp_path / "data" / "vault.json") == 0o600
    assert len(base64.b64decode(key_file.read_text().strip())) == 32
    assert Vault(str(tmp_path / "data"), {}).resolve(VALUES)[0] == VALUES
    # the key file's text works as GATEWAY_MASTER_KEY too
    env = {"GATEWAY_MASTER_KEY": key_file.read_text()}
    assert Vault(str(tmp_path / "data"), env).get("openai") == VALUES["openai"]


def test_reading_never_creates_a_key_file(tmp_path: Path):
    """list, resolve and master_key on an absent vault create nothing."""
    vault = Vault(str(tmp_path / "data"), {})
    assert vault.list() == [] and vault.resolve(["a"]) == ({}, []) and vault.master_key() is None
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o700, 0o660])
def test_key_file_with_a_wider_mode_is_refused(tmp_path: Path, mode: int):
    """A key file readable (or more) beyond its owner is not used; the message says chmod 600."""
    filled(tmp_path, {})
    key_file = tmp_path / "master.key"
    before = key_file.read_bytes()
    key_file.chmod(mode)
    for action in (lambda v: v.get("openai"), lambda v: v.set("other", "v")):
        with pytest.raises(VaultError) as info:
            action(Vault(str(tmp_path), {}))
        assert f"has mode {mode:04o}, wider than 0600" in str(info.value)
        assert f"chmod 600 {key_file}" in str(info.value)
    assert key_file.read_bytes() == before
    key_file.chmod(0o600)
    assert Vault(str(tmp_path), {}).get("openai") == VALUES["openai"]


def test_narrower_key_file_mode_is_accepted(tmp_path: Path):
    """0400 is narrower than 0600 and fine."""
    filled(tmp_path, {})
    (tmp_path / "master.key").chmod(0o400)
    assert Vault(str(tmp_path), {}).get("aws") == VALUES["aws"]


def test_lost_key_file_is_not_silently_replaced(tmp_path: Path):
    """With secrets stored and master.key gone, writes refuse instead of making a new key."""
    filled(tmp_path, {})
    (tmp_path / "master.key").unlink()
    with pytest.raises(VaultError, match="no master key was found.*restore the key file"):
        Vault(str(tmp_path), {}).set("x", "y")
    assert not (tmp_path / "master.key").exists()


def test_corrupt_key_file_is_a_clear_error(tmp_path: Path):
    """A key file that is not 32 bytes of base64 or hex names the file."""
    filled(tmp_path, {})
    (tmp_path / "master.key").write_text("garbage\n")
    with pytest.raises(VaultError, match="the master key file .*master.key is not a valid"):
        Vault(str(tmp_path), {}).get("openai")


# -- passphrase (Argon2id) ---------------------------------------------------------------------

def test_passphrase_mode_round_trip_and_parameters(tmp_path: Path):
    """The key is Argon2id(passphrase, stored salt) at the documented costs; no key file."""
    env = {"GATEWAY_MASTER_PASSPHRASE": PASSPHRASE}
    filled(tmp_path, env)
    doc = json.loads((tmp_path / "vault.json").read_text())
    kdf = doc["kdf"]
    assert kdf["name"] == "argon2id"
    assert len(base64.b64decode(kdf["salt"])) == nacl.pwhash.argon2id.SALTBYTES
    assert kdf["opslimit"] == nacl.pwhash.argon2id.OPSLIMIT_MODERATE == 3
    assert kdf["memlimit"] == nacl.pwhash.argon2id.MEMLIMIT_MODERATE == 256 * 1024 * 1024
    assert not (tmp_path / "master.key").exists()
    vault_module._derived.clear()  # as a fresh process would
    key = nacl.pwhash.argon2id.kdf(32, PASSPHRASE.encode(), base64.b64decode(kdf["salt"]),
                                   opslimit=kdf["opslimit"], memlimit=kdf["memlimit"])
    box = nacl.secret.SecretBox(key)
    plain = box.decrypt(base64.b64decode(doc["secrets"]["openai"]["ciphertext"]))
    assert plain == b"openai\0" + VALUES["openai"].encode()
    assert Vault(str(tmp_path), env).resolve(VALUES)[0] == VALUES


def test_wrong_passphrase_and_short_passphrase(tmp_path: Path):
    """Another passphrase gets the clear error naming the variable; short ones are refused."""
    filled(tmp_path, {"GATEWAY_MASTER_PASSPHRASE": PASSPHRASE})
    with pytest.raises(WrongKeyError, match="was GATEWAY_MASTER_PASSPHRASE changed"):
        Vault(str(tmp_path), {"GATEWAY_MASTER_PASSPHRASE": PASSPHRASE + "!"}).get("openai")
    with pytest.raises(VaultError, match="too short"):
        Vault(str(tmp_path / "other"), {"GATEWAY_MASTER_PASSPHRASE": "short"}).set("a", "v")


def test_passphrase_against_a_key_file_vault_names_the_mode(tmp_path: Path):
    """A passphrase given for a vault made with a key file says how the vault was made."""
    filled(tmp_path, {})
    with pytest.raises(WrongKeyError, match="last written with a key from the key file"):
        Vault(str(tmp_path), {"GATEWAY_MASTER_PASSPHRASE": PASSPHRASE}).get("openai")


# -- rotate-master -----------------------------------------------------------------------------

def old_box_fails(folder: Path, key: bytes) -> bool:
    """True when no ciphertext in the vault opens with ``key``."""
    doc = json.loads((folder / "vault.json").read_text())
    box = nacl.secret.SecretBox(key)
    for entry in doc["secrets"].values():
        with pytest.raises(nacl.exceptions.CryptoError):
            box.decrypt(base64.b64decode(entry["ciphertext"]))
    return True


def test_rotate_key_file_mode(tmp_path: Path):
    """Every secret opens with the new key file, none with the old key; dates are kept."""
    filled(tmp_path, {})
    key_file = tmp_path / "master.key"
    old_text = key_file.read_text()
    before = {s.name: s for s in Vault(str(tmp_path), {}).list()}
    rotation = Vault(str(tmp_path), {}).rotate()
    assert rotation.mode == "file" and rotation.secrets == 3
    assert key_file.read_text() != old_text and mode_of(key_file) == 0o600
    assert not (tmp_path / "master.key.new").exists()
    assert Vault(str(tmp_path), {}).resolve(VALUES)[0] == VALUES
    assert {s.name: s for s in Vault(str(tmp_path), {}).list()} == before
    with pytest.raises(WrongKeyError):
        Vault(str(tmp_path), {"GATEWAY_MASTER_KEY": old_text}).get("openai")
    assert old_box_fails(tmp_path, base64.b64decode(old_text))


def test_rotate_env_mode(tmp_path: Path):
    """The new key is handed to before_commit; the old key no longer opens anything."""
    old = new_key()
    filled(tmp_path, {"GATEWAY_MASTER_KEY": old})
    shown: list[MasterKey] = []
    rotation = Vault(str(tmp_path), {"GATEWAY_MASTER_KEY": old}).rotate(shown.append)
    assert rotation.mode == "env" and len(shown) == 1
    new = shown[0].encoded()
    assert Vault(str(tmp_path), {"GATEWAY_MASTER_KEY": new}).resolve(VALUES)[0] == VALUES
    with pytest.raises(WrongKeyError):
        Vault(str(tmp_path), {"GATEWAY_MASTER_KEY": old}).get("openai")
    assert old_box_fails(tmp_path, base64.b64decode(old))
    assert not (tmp_path / "master.key").exists()


def test_rotate_passphrase_mode_needs_the_new_passphrase(tmp_path: Path):
    """Refused without GATEWAY_NEW_MASTER_PASSPHRASE; with it, a new salt and only it opens."""
    env = {"GATEWAY_MASTER_PASSPHRASE": PASSPHRASE}
    filled(tmp_path, env)
    salt = json.loads((tmp_path / "vault.json").read_text())["kdf"]["salt"]
    with pytest.raises(VaultError, match="GATEWAY_NEW_MASTER_PASSPHRASE"):
        Vault(str(tmp_path), env).rotate()
    new_pass = "another long passphrase"
    Vault(str(tmp_path), {**env, "GATEWAY_NEW_MASTER_PASSPHRASE": new_pass}).rotate()
    assert json.loads((tmp_path / "vault.json").read_text())["kdf"]["salt"] != salt
    new_env = {"GATEWAY_MASTER_PASSPHRASE": new_pass}
    assert Vault(str(tmp_path), new_env).resolve(VALUES)[0] == VALUES
    with pytest.raises(WrongKeyError):
        Vault(str(tmp_path), env).get("openai")


def test_failure_while_re_encrypting_loses_nothing(tmp_path: Path, monkeypatch):
    """A crash after re-encrypting one secret leaves the vault and key file as they were."""
    filled(tmp_path, {})
    snapshot = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    calls = []

    def failing(box, name, value):
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError("power cut")
        return original(box, name, value)

    original = Vault._encrypt
    monkeypatch.setattr(Vault, "_encrypt", staticmethod(failing))
    with pytest.raises(RuntimeError, match="power cut"):
        Vault(str(tmp_path), {}).rotate()
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == snapshot
    assert Vault(str(tmp_path), {}).resolve(VALUES)[0] == VALUES


def test_failure_writing_the_vault_loses_nothing(tmp_path: Path, monkeypatch):
    """When the new vault cannot be written, the old vault and key stay; no .new is left."""
    filled(tmp_path, {})
    key_before = (tmp_path / "master.key").read_bytes()
    vault_before = (tmp_path / "vault.json").read_bytes()
    real = vault_module.atomic_write

    def disk_full(path, data, **kw):
        if path.endswith("vault.json"):
            raise OSError(28, "No space left on device")
        return real(path, data, **kw)

    monkeypatch.setattr(vault_module, "atomic_write", disk_full)
    with pytest.raises(VaultError, match="No space left"):
        Vault(str(tmp_path), {}).rotate()
    monkeypatch.undo()
    assert (tmp_path / "master.key").read_bytes() == key_before
    assert (tmp_path / "vault.json").read_bytes() == vault_before
    assert not (tmp_path / "master.key.new").exists()
    assert Vault(str(tmp_path), {}).resolve(VALUES)[0] == VALUES


def test_failure_before_commit_in_env_mode_changes_nothing(tmp_path: Path):
    """If the new key cannot be shown, the vault is not re-encrypted."""
    key = new_key()
    filled(tmp_path, {"GATEWAY_MASTER_KEY": key})
    before = (tmp_path / "vault.json").read_bytes()

    def cannot_print(new):
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(BrokenPipeError):
        Vault(str(tmp_path), {"GATEWAY_MASTER_KEY": key}).rotate(cannot_print)
    assert (tmp_path / "vault.json").read_bytes() == before
    assert Vault(str(tmp_path), {"GATEWAY_MASTER_KEY": key}).resolve(VALUES)[0] == VALUES


def test_crash_between_commit_and_key_swap_is_recovered(tmp_path: Path, monkeypatch):
    """The vault is committed but master.key not yet replaced: readers use master.key.new,
    the next writer finishes the swap, and the old key opens nothing."""
    filled(tmp_path, {})
    old_text = (tmp_path / "master.key").read_text()

    def crash(self, pending):
        raise RuntimeError("killed")

    monkeypatch.setattr(Vault, "_install_key", crash)
    with pytest.raises(RuntimeError, match="killed"):
        Vault(str(tmp_path), {}).rotate()
    monkeypatch.undo()
    assert (tmp_path / "master.key").read_text() == old_text
    pending = (tmp_path / "master.key.new").read_text()
    assert Vault(str(tmp_path), {}).resolve(VALUES)[0] == VALUES  # a reader, mid-state
    Vault(str(tmp_path), {}).set("later", "v")  # a writer finishes the rotation
    assert (tmp_path / "master.key").read_text() == pending
    assert not (tmp_path / "master.key.new").exists()
    assert mode_of(tmp_path / "master.key") == 0o600
    assert Vault(str(tmp_path), {}).resolve(VALUES)[0] == VALUES
    with pytest.raises(WrongKeyError):
        Vault(str(tmp_path), {"GATEWAY_MASTER_KEY": old_text}).get("openai")


def test_stale_new_key_from_a_failed_rotation_is_removed(tmp_path: Path):
    """A master.key.new that does not open the vault is left over and removed by a writer."""
    filled(tmp_path, {})
    stale = tmp_path / "master.key.new"
    stale.write_text(new_key() + "\n")
    stale.chmod(0o600)
    assert Vault(str(tmp_path), {}).get("openai") == VALUES["openai"]
    Vault(str(tmp_path), {}).set("x", "y")
    assert not stale.exists()


def test_rotate_an_empty_vault_is_refused(tmp_path: Path):
    """Nothing to rotate is said plainly."""
    with pytest.raises(VaultError, match="nothing to rotate"):
        Vault(str(tmp_path), {"GATEWAY_MASTER_KEY": new_key()}).rotate()


# -- several processes -------------------------------------------------------------------------

READER = """
import json, os, sys, time
sys.path.insert(0, {root!r})
from gateway.vault import Vault
want = json.loads({values!r})
stop = {stop!r}
reads = errors = 0
first_error = None
while not os.path.exists(stop):
    try:
        got, _ = Vault({folder!r}, {{}}).resolve(want)
        assert got == want, "different values"
        reads += 1
    except Exception as exc:
        errors += 1
        first_error = first_error or repr(exc)
    if reads + errors == 1:  # reading: the writer may start
        open(stop + ".ready." + str(os.getpid()), "w").close()
print(json.dumps({{"reads": reads, "errors": errors, "first": first_error}}))
"""


def test_readers_in_other_processes_never_fail_while_a_writer_rotates(tmp_path: Path):
    """Two reader processes see every value at every moment while this one rotates and sets."""
    filled(tmp_path, {})
    stop = tmp_path / "stop"
    script = READER.format(root=str(ROOT), values=json.dumps(VALUES), stop=str(stop),
                           folder=str(tmp_path))
    readers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                text=True, env=clean_env()) for _ in range(2)]
    try:
        deadline = time.monotonic() + 30  # both readers reading (they start slowly under load)
        while len(list(tmp_path.glob("stop.ready.*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        for i in range(15):
            Vault(str(tmp_path), {}).rotate()
            Vault(str(tmp_path), {}).set(f"extra-{i}", f"value-{i}")
    finally:
        stop.write_text("")
        results = [json.loads(r.communicate(timeout=30)[0]) for r in readers]
    for result in results:
        assert result["errors"] == 0, result
        assert result["reads"] > 0
    assert len(Vault(str(tmp_path), {}).names()) == 3 + 15


def test_concurrent_writers_lose_no_update(tmp_path: Path):
    """Six `gateway secrets set` processes at once: one key file, all six secrets kept."""
    procs = [subprocess.Popen(
        [sys.executable, "-m", "gateway", "secrets", "set", f"s{i}", "--data-dir", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=ROOT, env=clean_env()) for i in range(6)]
    for i, proc in enumerate(procs):
        out, err = proc.communicate(f"value-{i}", timeout=60)
        assert proc.returncode == 0, err
    values, names = Vault(str(tmp_path), {}).resolve([f"s{i}" for i in range(6)])
    assert values == {f"s{i}": f"value-{i}" for i in range(6)}
