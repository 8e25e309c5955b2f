"""The storage layer: every SQLite file in the data directory, and how it is opened, migrated
and written.

- ``sqlite.py``   one WAL ``connect()`` and ``migrate()`` (sqlite-utils Migrations, under a lock)
- ``writer.py``   ``Writer``: the one thread that owns a file's write connection
- ``tasks.py``    ``Supervisor``: background tasks kept referenced and restarted when they crash
- ``files.py``    ``atomic_write``: a file written whole (temporary file, fsync, rename)
- ``tasks.py``    also ``spawn``: one-shot background tasks, referenced until done, errors logged
- ``gateway_db.py``, ``keys_db.py``, ``usage_db.py``, ``state_db.py``: one module per file,
  its name, its tables (as numbered migrations) and its queries
- ``legacy.py``   moving keys and usage out of an older ``gateway.db`` (their migration)

Callers above (config versions, keys, usage, limit counters) keep their domain logic; the
SQL and the files are here.
"""
