"""SQL classification: classify.py is the only module that imports sqlglot."""
