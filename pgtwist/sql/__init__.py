"""SQL classification: parsed.py is the only module that imports sqlglot (classify.py loads
it through parsed.py)."""
