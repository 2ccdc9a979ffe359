"""A node that logs in and then never answers the role check's query: the check gives up
after connect_timeout instead of waiting forever (and every client waiting for the primary
with it)."""

from __future__ import annotations

import socket
import struct
import threading
import time

import psycopg
import pytest

from pgtwist.dev import devcluster as dc

pytestmark = pytest.mark.integration


class SilentAfterLogin:
    """Accepts any login (AuthenticationOk), then reads queries and answers none."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((dc.HOST, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        try:
            size = struct.unpack("!I", conn.recv(4, socket.MSG_WAITALL))[0]
            conn.recv(size - 4, socket.MSG_WAITALL)  # the StartupMessage
            conn.sendall(b"R" + struct.pack("!II", 8, 0)              # AuthenticationOk
                         + b"K" + struct.pack("!III", 12, 4242, 7)    # BackendKeyData
                         + b"Z" + struct.pack("!I", 5) + b"I")        # ReadyForQuery
            while conn.recv(65536):
                pass                                                   # ...and silence
        except OSError:
            pass

    def close(self) -> None:
        for c in [self.sock, *self.conns]:
            try:
                c.close()
            except OSError:
                pass


def _node0_lsn(pg) -> str:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        return dict(conn.execute("SHOW pgtwist_consistency").fetchall())["node0_replay_lsn"]


def test_a_hung_role_check_is_bounded_by_connect_timeout(cluster, pgtwist_factory):
    """Before: the first round never ended, so no later round ran (roles, failovers and
    delays were never looked at again).  Now each round ends within connect_timeout and
    the primary's WAL position keeps moving in SHOW pgtwist_consistency."""
    silent = SilentAfterLogin()
    try:
        nodes = [{"hostname": dc.HOST, "port": cluster.primary_port, "weight": 1},
                 {"hostname": dc.HOST, "port": silent.port, "weight": 0}]
        pg = pgtwist_factory(extra={"backends": nodes, "connect_timeout": 1000,
                                    "sr_check_period": 1, "health_check_period": 0,
                                    "read_consistency": "none"})
        with psycopg.connect(pg.dsn(), connect_timeout=15, autocommit=True) as conn:
            assert conn.execute("select pg_is_in_recovery()").fetchone() == (False,)
        deadline = time.monotonic() + 5
        while not _node0_lsn(pg) and time.monotonic() < deadline:
            time.sleep(0.2)
        first = _node0_lsn(pg)
        assert first, "the primary was never checked"
        cluster.psql("select pg_switch_wal(); checkpoint")   # the WAL position moves on
        deadline = time.monotonic() + 8
        while _node0_lsn(pg) == first and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _node0_lsn(pg) != first, "no role check round after the hung one"
    finally:
        silent.close()
