"""atomic_write: the one helper for files written whole (config rollback, init, the vault)."""

from __future__ import annotations

import os
import stat

from gateway.store.files import atomic_write


def test_a_new_file_gets_the_mode_asked_for_and_no_temporary_file_stays(tmp_path):
    path = tmp_path / "sub" / "vault.json"
    assert atomic_write(str(path), b"secret", mode=0o600) is True
    assert path.read_bytes() == b"secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(path.parent) == ["vault.json"]


def test_replacing_keeps_the_mode_of_the_file_replaced(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text("old")
    os.chmod(path, 0o640)
    atomic_write(str(path), b"new")
    assert path.read_text() == "new" and stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_exclusive_does_not_replace_an_existing_file(tmp_path):
    path = tmp_path / "master.key"
    path.write_text("first")
    assert atomic_write(str(path), b"second", mode=0o600, exclusive=True) is False
    assert path.read_text() == "first"
    assert os.listdir(tmp_path) == ["master.key"]
