"""pgtwist: a PostgreSQL proxy on Twisted, drop-in for Pgpool-II's routing and pooling."""

__version__ = "0.1.0"
