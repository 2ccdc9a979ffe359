"""Benchmarks for pgtwist (``python -m bench``); never part of the test run. See README.md."""
