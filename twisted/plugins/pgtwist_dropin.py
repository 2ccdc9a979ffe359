from twisted.application.service import ServiceMaker

pgtwist = ServiceMaker(
    "pgtwist",
    "pgtwist.tap",
    "PostgreSQL proxy: read/write routing and connection pooling (Pgpool-II compatible)",
    "pgtwist",
)
