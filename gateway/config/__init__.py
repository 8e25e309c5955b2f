"""Config pipeline: load (YAML + positions + ${ENV}) -> validate (JSON Schema) -> compile (graph)."""
