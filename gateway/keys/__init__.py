"""Virtual keys created at run time (CLI, admin API), stored hashed in SQLite."""
