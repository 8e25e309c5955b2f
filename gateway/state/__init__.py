"""Runtime state kept outside the immutable graph, keyed by stable identities."""
