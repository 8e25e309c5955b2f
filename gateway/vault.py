"""The vault: provider secrets encrypted at rest with PyNaCl's SecretBox (XSalsa20-Poly1305).

Files in ``data_dir``:

- ``vault.json`` (mode 0600): every secret's name, ``created_at`` and ``updated_at`` in clear,
  its value encrypted; a check value that tells a wrong master key from a damaged file; the
  Argon2id salt and costs in passphrase mode. It is only ever replaced whole (temporary file,
  fsync, rename), so a reader in any process sees either the old or the new vault, never half.
- ``vault.lock``: writers (the CLI) take an exclusive ``flock`` on it; readers never lock.
- ``master.key`` (mode 0600): the master key in key-file mode, base64, made on first use.
- ``master.key.new``: exists only while ``rotate-master`` runs in key-file mode (see ``rotate``).

The master key comes from, in this order: ``GATEWAY_MASTER_KEY`` (32 bytes as base64 or hex),
``GATEWAY_MASTER_PASSPHRASE`` (Argon2id with a random salt stored in the vault), or the key file.
Every failure is a ``VaultError`` whose message says what to do; none contains a secret value.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import hashlib
import json
import os
import re
import stat
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from . import datadir
from .store.files import atomic_write, fsync_dir
from .units import iso_utc

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: single-writer use only
    fcntl = None  # type: ignore[assignment]

ENV_KEY = "GATEWAY_MASTER_KEY"
ENV_PASSPHRASE = "GATEWAY_MASTER_PASSPHRASE"
ENV_NEW_PASSPHRASE = "GATEWAY_NEW_MASTER_PASSPHRASE"

VAULT_FILE = "vault.json"
KEY_FILE = "master.key"
LOCK_FILE = "vault.lock"
FORMAT = "bodhi-gateway-vault"
FORMAT_VERSION = 1

# Argon2id costs for keys derived from a passphrase: libsodium's "moderate" level, 3 passes
# over 256 MiB (about 0.7 s on a current CPU). They are stored in the vault beside the salt,
# so a vault keeps opening if these defaults change. The derived key is cached per process.
ARGON2_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
ARGON2_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
MIN_PASSPHRASE = 8

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
_NAME = re.compile(NAME_PATTERN)
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_CHECK = b"bodhi-gateway vault check v1"
_MODE_SOURCES = {
    "env": ENV_KEY,
    "passphrase": f"a passphrase ({ENV_PASSPHRASE})",
    "file": f"the key file {KEY_FILE}",
}


class VaultError(Exception):
    """A vault problem, with a message for people. Never contains a secret value."""


class WrongKeyError(VaultError):
    """The master key does not open the vault."""


class UnknownSecret(VaultError):
    """No secret by that name; ``names`` are the ones the vault has (for suggestions)."""

    def __init__(self, message: str, name: str, names: list[str]):
        super().__init__(message)
        self.name, self.names = name, names


@dataclass(frozen=True)
class SecretInfo:
    name: str
    created_at: str
    updated_at: str

    def as_dict(self) -> dict:
        return {"name": self.name, "created_at": self.created_at, "updated_at": self.updated_at}


@dataclass(frozen=True)
class MasterKey:
    key: bytes = field(repr=False)
    mode: str  # env | passphrase | file
    kdf: Mapping[str, Any] | None = None  # passphrase mode: salt and Argon2id costs

    def encoded(self) -> str:
        """The key as GATEWAY_MASTER_KEY takes it (base64)."""
        return base64.b64encode(self.key).decode("ascii")


@dataclass(frozen=True)
class Rotation:
    mode: str
    secrets: int
    key_path: str | None  # key-file mode: where the new key was written


def valid_name(name: str) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def parse_key(text: str, origin: str) -> bytes:
    """32 key bytes from base64 or hex text; ``origin`` names where the text came from."""
    text = text.strip()
    if _HEX_KEY.fullmatch(text):
        return bytes.fromhex(text)
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == nacl.secret.SecretBox.KEY_SIZE:
        return raw
    raise VaultError(
        f"{origin} is not a valid master key: it must be 32 random bytes written as base64 "
        f"(44 characters) or hex (64 characters), not {len(text)} characters of something else "
        "(make one with: openssl rand -base64 32)"
    )


_derived: dict[tuple, bytes] = {}


def derive_key(passphrase: str, kdf: Mapping[str, Any]) -> bytes:
    """Argon2id(passphrase, salt) with the vault's stored costs; cached per process."""
    try:
        if kdf.get("name") != "argon2id":
            raise ValueError(kdf.get("name"))
        salt = base64.b64decode(kdf["salt"], validate=True)
        ops, mem = int(kdf["opslimit"]), int(kdf["memlimit"])
    except (AttributeError, KeyError, TypeError, ValueError, binascii.Error):
        raise VaultError("the vault's key derivation settings (kdf) are damaged: restore "
                         "vault.json from a backup") from None
    cache_key = (hashlib.sha256(passphrase.encode()).digest(), salt, ops, mem)
    if cache_key not in _derived:
        try:
            _derived[cache_key] = nacl.pwhash.argon2id.kdf(
                nacl.secret.SecretBox.KEY_SIZE, passphrase.encode("utf-8"), salt,
                opslimit=ops, memlimit=mem)
        except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
            raise VaultError(f"cannot derive the master key from the passphrase: {exc}") from None
        if len(_derived) > 8:
            _derived.pop(next(iter(_derived)))
    return _derived[cache_key]


def new_kdf(passphrase: str) -> dict:
    if len(passphrase) < MIN_PASSPHRASE:
        raise VaultError(f"the passphrase is too short: use at least {MIN_PASSPHRASE} characters "
                         "(a long random phrase is best)")
    return {"name": "argon2id", "salt": _b64(nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)),
            "opslimit": ARGON2_OPSLIMIT, "memlimit": ARGON2_MEMLIMIT}


class Vault:
    """The encrypted secrets in one data directory. Cheap to create: files are read per call."""

    def __init__(self, data_dir: str, env: Mapping[str, str] | None = None):
        self.data_dir = os.path.abspath(data_dir)
        self.path = os.path.join(self.data_dir, VAULT_FILE)
        self.key_path = os.path.join(self.data_dir, KEY_FILE)
        self.lock_path = os.path.join(self.data_dir, LOCK_FILE)
        self.env = os.environ if env is None else env
        self.created_key_file = False  # set when this object made master.key

    # -- reading (no lock, no key needed for names and dates) ------------------------------

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def list(self) -> builtins.list[SecretInfo]:
        doc = self._load()
        if doc is None:
            return []
        return [SecretInfo(n, e.get("created_at", ""), e.get("updated_at", ""))
                for n, e in sorted(doc["secrets"].items())]

    def names(self) -> builtins.list[str]:
        return [s.name for s in self.list()]

    def get(self, name: str) -> str:
        values, names = self.resolve([name])
        if name not in values:
            raise UnknownSecret(f"no secret '{name}' in the vault at {self.path}", name, names)
        return values[name]

    def resolve(self, names: Iterable[str]) -> tuple[dict[str, str], builtins.list[str]]:
        """(values of those ``names`` the vault has, every name it has) from one reading of
        the vault file. The master key is needed only when a wanted name is present."""
        wanted = set(names)
        for attempt in range(6):
            doc = self._load()
            if doc is None:
                return {}, []
            present = sorted(wanted & set(doc["secrets"]))
            if not present:
                return {}, sorted(doc["secrets"])
            try:
                key = self._key_for(doc, create=False)
            except WrongKeyError:
                # A key-file rotation in another process may have replaced the vault between
                # our reading it and the key file: read both again.
                if attempt == 5 or self._mode() != "file":
                    raise
                time.sleep(0.02 * (attempt + 1))
                continue
            assert key is not None
            box = nacl.secret.SecretBox(key.key)
            values = {n: self._decrypt(box, n, doc["secrets"][n]) for n in present}
            return values, sorted(doc["secrets"])
        raise AssertionError("unreachable")

    def master_key(self) -> MasterKey | None:
        """The master key that opens the vault as it is now (None: no vault and no key yet)."""
        return self._key_for(self._load(), create=False)

    # -- writing (exclusive lock) ----------------------------------------------------------

    def set(self, name: str, value: str) -> bool:
        """Store ``value`` under ``name``; True when the name is new."""
        if not valid_name(name):
            raise VaultError(f"'{name}' is not a valid secret name: start with a letter or "
                             "digit, then letters, digits, '.', '_' or '-' (at most 128)")
        if not isinstance(value, str) or not value:
            raise VaultError(f"refusing to store an empty value for '{name}'")
        with self._locked():
            doc = self._load() or _new_doc()
            key = self._key_for(doc, create=True)
            assert key is not None
            box = nacl.secret.SecretBox(key.key)
            now = _now()
            entry = doc["secrets"].get(name)
            doc["secrets"][name] = {
                "ciphertext": self._encrypt(box, name, value),
                "created_at": entry.get("created_at", now) if entry else now,
                "updated_at": now,
            }
            _stamp(doc, key, box)
            self._write(doc)
        return entry is None

    def setdefault(self, name: str, make: Callable[[], str]) -> str:
        """The value of ``name``; when the vault has none, ``make()`` is stored under it (under
        the writer lock, so of several processes asking at once exactly one makes it)."""
        values, _ = self.resolve([name])
        if name in values:
            return values[name]
        with self._locked():
            values, _ = self.resolve([name])
            if name in values:
                return values[name]
            doc = self._load() or _new_doc()
            key = self._key_for(doc, create=True)
            assert key is not None
            box = nacl.secret.SecretBox(key.key)
            value, now = make(), _now()
            doc["secrets"][name] = {"ciphertext": self._encrypt(box, name, value),
                                    "created_at": now, "updated_at": now}
            _stamp(doc, key, box)
            self._write(doc)
        return value

    def delete(self, name: str) -> None:
        with self._locked():
            doc = self._load()
            if doc is None or name not in doc["secrets"]:
                names = sorted(doc["secrets"]) if doc else []
                raise UnknownSecret(f"no secret '{name}' in the vault at {self.path}", name, names)
            del doc["secrets"][name]
            doc["updated_at"] = _now()
            self._write(doc)

    def rotate(self, before_commit: Callable[[MasterKey], None] | None = None) -> Rotation:
        """Re-encrypt every secret under a new master key, all or nothing.

        The new vault is written in one atomic rename: until then the old one is intact, after
        it every secret is under the new key. ``before_commit`` runs just before that rename
        (the CLI prints an env-mode key there: if printing fails, nothing changes). In key-file
        mode the new key is written to ``master.key.new`` first and renamed over ``master.key``
        after the commit; a crash in between is finished by the next reader or writer, which
        find that ``master.key.new`` opens the vault.
        """
        with self._locked():
            doc = self._load()
            if doc is None or not doc["secrets"]:
                raise VaultError(f"the vault at {self.path} holds no secrets: nothing to rotate")
            old = self._key_for(doc, create=True)  # finishes an interrupted rotation first
            assert old is not None
            if old.mode == "passphrase":
                passphrase = self.env.get(ENV_NEW_PASSPHRASE) or ""
                if not passphrase:
                    raise VaultError(
                        f"the master key of the vault at {self.path} is derived from "
                        f"{ENV_PASSPHRASE}: give the new passphrase in {ENV_NEW_PASSPHRASE} to "
                        "rotate it")
                kdf = new_kdf(passphrase)
                new = MasterKey(derive_key(passphrase, kdf), "passphrase", kdf)
            else:
                new = MasterKey(nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE), old.mode)
            old_box, new_box = nacl.secret.SecretBox(old.key), nacl.secret.SecretBox(new.key)
            secrets = {}
            for name, entry in doc["secrets"].items():
                value = self._decrypt(old_box, name, entry)
                secrets[name] = {**entry, "ciphertext": self._encrypt(new_box, name, value)}
            rotated = {**doc, "secrets": secrets, "rotated_at": _now()}
            _stamp(rotated, new, new_box)
            pending = self.key_path + ".new"
            try:
                if new.mode == "file":
                    atomic_write(pending, (new.encoded() + "\n").encode(), mode=0o600)
                if before_commit is not None:
                    before_commit(new)
                self._write(rotated)  # the commit
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(pending)
                raise
            if new.mode == "file":
                self._install_key(pending)
        return Rotation(new.mode, len(secrets), self.key_path if new.mode == "file" else None)

    # -- master key ------------------------------------------------------------------------

    def _mode(self) -> str:
        key = (self.env.get(ENV_KEY) or "").strip()
        passphrase = self.env.get(ENV_PASSPHRASE) or ""
        if key and passphrase:
            raise VaultError(f"both {ENV_KEY} and {ENV_PASSPHRASE} are set: set only the one the "
                             f"vault at {self.path} was made with")
        return "env" if key else "passphrase" if passphrase else "file"

    def _key_for(self, doc: dict | None, *, create: bool) -> MasterKey | None:
        """The master key, checked against ``doc``. Raises WrongKeyError when it does not fit."""
        mode = self._mode()
        key: MasterKey | None
        if mode == "env":
            key = MasterKey(parse_key(self.env[ENV_KEY], ENV_KEY), "env")
        elif mode == "passphrase":
            key = self._passphrase_key(doc)
        else:
            key = self._file_key(doc, create)
            if key is None:
                return None
        if _opens(doc, key):
            if mode == "file" and create:
                self._settle_rotation()
            return key
        if mode == "file":
            pending = self._read_key_file(self.key_path + ".new", missing_ok=True)
            if pending is not None and _opens(doc, pending):
                if create:  # a writer finishes the interrupted rotation
                    self._install_key(self.key_path + ".new")
                return pending
        raise self._wrong_key(doc, key)

    def _passphrase_key(self, doc: dict | None) -> MasterKey:
        passphrase = self.env[ENV_PASSPHRASE]
        kdf = doc.get("kdf") if doc else None
        if kdf is None:
            if doc is not None and doc["secrets"]:
                raise self._wrong_key(doc, MasterKey(b"", "passphrase"))
            kdf = new_kdf(passphrase)
        return MasterKey(derive_key(passphrase, kdf), "passphrase", kdf)

    def _file_key(self, doc: dict | None, create: bool) -> MasterKey | None:
        key = self._read_key_file(self.key_path, missing_ok=True)
        if key is not None:
            return key
        if doc is not None and doc["secrets"]:
            made_with = _MODE_SOURCES.get(doc.get("key_mode", ""), "an unknown master key")
            raise VaultError(
                f"the vault at {self.path} is encrypted but no master key was found: "
                f"{ENV_KEY} and {ENV_PASSPHRASE} are not set and {self.key_path} does not exist. "
                f"It was written with a key from {made_with}: set that variable, or restore the "
                "key file from your backup")
        if not create:
            return None
        self._ensure_dir()
        key = MasterKey(nacl.utils.random(nacl.secret.SecretBox.KEY_SIZE), "file")
        if atomic_write(self.key_path, (key.encoded() + "\n").encode(), mode=0o600,
                        exclusive=True):
            self.created_key_file = True
            return key
        return self._read_key_file(self.key_path, missing_ok=False)  # another process won

    def _read_key_file(self, path: str, *, missing_ok: bool) -> MasterKey | None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            if missing_ok:
                return None
            raise VaultError(f"the master key file {path} disappeared") from None
        except OSError as exc:
            raise VaultError(f"cannot read the master key file {path}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise VaultError(f"the master key file {path} is not a regular file")
            if stat.S_IMODE(info.st_mode) & ~0o600:
                raise VaultError(
                    f"the master key file {path} has mode {stat.S_IMODE(info.st_mode):04o}, wider "
                    f"than 0600, so it is not used. Fix it with: chmod 600 {path} (if other users "
                    "could read it, consider the key exposed and run gateway secrets rotate-master)")
            with os.fdopen(os.dup(fd), "rb") as fh:
                raw = fh.read(4096)
        finally:
            os.close(fd)
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            text = "?" * len(raw)
        return MasterKey(parse_key(text, f"the master key file {path}"), "file")

    def _settle_rotation(self) -> None:
        """Under the writer lock: a master.key.new that does not open the vault is left over
        from a rotation that failed before its commit; remove it."""
        with contextlib.suppress(OSError):
            os.unlink(self.key_path + ".new")

    def _install_key(self, pending: str) -> None:
        os.replace(pending, self.key_path)
        fsync_dir(self.data_dir)

    def _wrong_key(self, doc: dict | None, key: MasterKey) -> WrongKeyError:
        question = {
            "env": f"was {ENV_KEY} changed?",
            "passphrase": f"was {ENV_PASSPHRASE} changed?",
            "file": f"was {ENV_KEY} unset, or the key file {self.key_path} replaced?",
        }[key.mode]
        recorded = (doc or {}).get("key_mode")
        made = ""
        if recorded and recorded != key.mode:
            made = f" It was last written with a key from {_MODE_SOURCES.get(recorded, recorded)}."
        return WrongKeyError(
            f"the vault at {self.path} cannot be decrypted with this master key: {question}"
            f"{made} Use the master key the vault was encrypted with (see docs/secrets.md); if it "
            "is lost, the secrets must be set again")

    # -- files -----------------------------------------------------------------------------

    def _load(self) -> dict | None:
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise VaultError(f"cannot read the vault at {self.path}: {exc.strerror}") from None
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise VaultError(f"the vault at {self.path} is damaged (not a vault file): restore it "
                             "from a backup")
        if doc.get("version") != FORMAT_VERSION:
            raise VaultError(f"the vault at {self.path} has format version "
                             f"{doc.get('version')!r}; this gateway reads version "
                             f"{FORMAT_VERSION} (was it written by a newer gateway?)")
        secrets = doc.get("secrets")
        if not isinstance(secrets, dict) or not all(
                isinstance(e, dict) and isinstance(e.get("ciphertext"), str)
                for e in secrets.values()):
            raise VaultError(f"the vault at {self.path} is damaged (bad secrets table): restore "
                             "it from a backup")
        return doc

    def _write(self, doc: dict) -> None:
        self._ensure_dir()
        data = json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"
        try:
            atomic_write(self.path, data, mode=0o600)
        except OSError as exc:
            raise VaultError(f"cannot write the vault at {self.path}: {exc.strerror}") from None

    def _ensure_dir(self) -> None:
        try:
            datadir.private_dir(self.data_dir)
        except OSError as exc:
            raise VaultError(f"cannot create the data directory {self.data_dir}: "
                             f"{exc.strerror}") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure_dir()
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise VaultError(f"cannot lock the vault ({self.lock_path}): {exc.strerror}") from None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    # -- encryption ------------------------------------------------------------------------
    # The name is sealed with the value, so a ciphertext copied under another name is refused.

    @staticmethod
    def _encrypt(box: nacl.secret.SecretBox, name: str, value: str) -> str:
        return _b64(box.encrypt(name.encode("utf-8") + b"\0" + value.encode("utf-8")))

    def _decrypt(self, box: nacl.secret.SecretBox, name: str, entry: Mapping[str, Any]) -> str:
        damaged = VaultError(f"the secret '{name}' in the vault at {self.path} cannot be "
                             "decrypted: the file was damaged or edited; restore it from a "
                             f"backup or set the secret again (gateway secrets set {name})")
        try:
            plain = box.decrypt(base64.b64decode(entry["ciphertext"], validate=True))
        except (nacl.exceptions.CryptoError, binascii.Error, ValueError, KeyError, TypeError):
            raise damaged from None
        prefix = name.encode("utf-8") + b"\0"
        if not plain.startswith(prefix):
            raise damaged
        try:
            return plain[len(prefix):].decode("utf-8")
        except UnicodeDecodeError:
            raise damaged from None


def _opens(doc: dict | None, key: MasterKey) -> bool:
    """Whether ``key`` opens ``doc``. An empty vault accepts any key (it is re-stamped)."""
    if doc is None or not doc["secrets"] or not doc.get("check"):
        return True
    try:
        box = nacl.secret.SecretBox(key.key)
        return box.decrypt(base64.b64decode(doc["check"], validate=True)) == _CHECK
    except (nacl.exceptions.CryptoError, binascii.Error, ValueError, TypeError):
        return False


def _stamp(doc: dict, key: MasterKey, box: nacl.secret.SecretBox) -> None:
    doc["check"] = _b64(box.encrypt(_CHECK))
    doc["key_mode"] = key.mode
    doc["kdf"] = dict(key.kdf) if key.kdf else None
    doc["updated_at"] = _now()


def _new_doc() -> dict:
    return {"format": FORMAT, "version": FORMAT_VERSION, "cipher": "nacl.secret.SecretBox",
            "created_at": _now(), "secrets": {}}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _now() -> str:
    return iso_utc(time.time())
