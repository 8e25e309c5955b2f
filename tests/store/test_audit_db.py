"""The audit trail's hash chain (store/audit_db.py): intact rows verify; an edited, deleted or
inserted row is named; SQLite itself refuses updates and deletes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.store.audit_db import GENESIS, AuditTrail, admin_actor, row_hash


def trail_with(tmp_path: Path, count: int = 4) -> AuditTrail:
    trail = AuditTrail(str(tmp_path))
    for i in range(count):
        trail.append("cli:alice", "key.create", f"k{i}", {"routes": ["*"], "n": i})
    return trail


def tamper(trail: AuditTrail, *statements: str) -> None:
    """What someone with the file does: drop the triggers, then change rows."""
    conn = sqlite3.connect(trail.path)
    conn.execute("drop trigger audit_no_update")
    conn.execute("drop trigger audit_no_delete")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_rows_chain_from_genesis_and_verify(tmp_path):
    """Each row's hash covers the previous hash and its own content; verify says intact."""
    trail = trail_with(tmp_path)
    rows = trail.rows()
    assert [r["id"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["prev_hash"] == GENESIS
    for before, row in zip(rows, rows[1:]):
        assert row["prev_hash"] == before["hash"] == row_hash(before["prev_hash"], before)
    assert trail.verify() == (4, None)


def test_an_edited_row_is_named(tmp_path):
    trail = trail_with(tmp_path)
    tamper(trail, "update audit set actor = 'cli:mallory' where id = 2")
    count, broken = trail.verify()
    assert (count, broken.row) == (4, 2) and "edited" in broken.reason


def test_an_edited_row_with_its_hash_recomputed_breaks_the_next_link(tmp_path):
    """Rewriting a row's hash too does not help: the next row chains from the old hash."""
    trail = trail_with(tmp_path)
    row = trail.rows()[1]
    row["actor"] = "cli:mallory"
    tamper(trail, f"update audit set actor = 'cli:mallory', hash = '{row_hash(row['prev_hash'], row)}' "
                  "where id = 2")
    _, broken = trail.verify()
    assert broken.row == 3 and "does not chain" in broken.reason


def test_a_deleted_row_is_named(tmp_path):
    trail = trail_with(tmp_path)
    tamper(trail, "delete from audit where id = 2")
    _, broken = trail.verify()
    assert broken.row == 3 and "row 2 is missing" in broken.reason


def test_an_inserted_row_is_named(tmp_path):
    """A row slipped in (its id shifted past the others) does not chain from its predecessor."""
    trail = trail_with(tmp_path, 2)
    tamper(trail, "update audit set id = id + 1 where id = 2",
           "insert into audit (id, at, actor, action, subject, details, prev_hash, hash) values "
           f"(2, '2026-01-01T00:00:00+00:00', 'cli:mallory', 'key.create', 'evil', '{{}}', "
           f"'{GENESIS}', '{'1' * 64}')")
    _, broken = trail.verify()
    assert broken.row == 2


def test_sqlite_refuses_updates_and_deletes(tmp_path):
    trail = trail_with(tmp_path, 1)
    conn = sqlite3.connect(trail.path)
    for statement in ("update audit set actor = 'x'", "delete from audit"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(statement)
    conn.close()


def test_once_records_an_action_a_single_time(tmp_path):
    """Several workers reloading the same file record the change once."""
    trail = AuditTrail(str(tmp_path))
    assert trail.append("watcher", "config.applied", "g.yaml", once="v2") is not None
    assert trail.append("watcher", "config.applied", "g.yaml", once="v2") is None
    assert len(trail.rows()) == 1


def test_admin_actor_is_a_hash_prefix_never_the_token():
    actor = admin_actor("Bearer s3cret-admin-token")
    assert actor.startswith("admin:") and len(actor) == len("admin:") + 12
    assert "s3cret" not in actor
    assert admin_actor("", "127.0.0.1") == "admin:no-token@127.0.0.1"
