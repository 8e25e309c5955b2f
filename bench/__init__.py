"""Benchmark harness for Bodhi Gateway: `python bench/run.py --help` (or `make bench`)."""
