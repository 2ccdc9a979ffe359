"""Developer tooling, not part of the proxy: a throwaway local PostgreSQL primary +
streaming replica (``devcluster``) and the one-command demo (``python -m pgtwist.dev.demo``)
that puts pgtwist in front of it.  The daemon never imports this package."""
