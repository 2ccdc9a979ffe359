"""A client that stops reading holds its backend; pgtwist's memory stays flat."""

from __future__ import annotations

import socket
import struct
import time

import psycopg
import pytest

pytestmark = pytest.mark.integration


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _startup(sock: socket.socket, app: str) -> None:
    body = struct.pack("!I", 196608)
    for k, v in (("user", "postgres"), ("database", "postgres"), ("application_name", app)):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    sock.sendall(struct.pack("!I", len(body) + 4) + body)
    buf = b""
    while not buf.endswith(b"Z\x00\x00\x00\x05I"):
        chunk = sock.recv(65536)
        assert chunk, "connection closed during startup"
        buf += chunk


def _backend_rows(cluster, app: str) -> list[str]:
    out = cluster.psql(
        f"select state from pg_stat_activity where application_name = '{app}'"
    )
    return [line for line in out.splitlines() if line]


def test_slow_reader_does_not_grow_memory_and_is_cancelled_on_close(pgtwist, cluster):
    pid = pgtwist.proc.pid
    app = "pgtwist_backpressure"
    sock = socket.create_connection(("127.0.0.1", pgtwist.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    try:
        _startup(sock, app)
        before = _rss_kb(pid)
        sql = b"select repeat('x', 1000) from generate_series(1, 3000000)\0"  # ~3 GB of rows
        sock.sendall(b"Q" + struct.pack("!I", len(sql) + 4) + sql)
        sock.recv(4096)  # the result has started flowing
        time.sleep(3)    # ...and we stop reading
        grown = _rss_kb(pid) - before
        assert grown < 64 * 1024, f"pgtwist grew by {grown} kB while the client did not read"
        # Other sessions are unaffected meanwhile.
        with psycopg.connect(pgtwist.dsn(), connect_timeout=10) as other:
            assert other.execute("select 42").fetchone() == (42,)
        assert _backend_rows(cluster, app), "the backend should still be running the query"
    finally:
        sock.close()
    deadline = time.monotonic() + 10
    while _backend_rows(cluster, app) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _backend_rows(cluster, app) == []
