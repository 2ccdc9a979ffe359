"""Shared set-up of the transaction pooling edge-case tests (test_txn_edge_*.py): the
``pooldb`` tables, daemons, raw clients.
"""

from __future__ import annotations

import struct

import psycopg
import pytest

from .conftest import TRUST_HBA, backends
from .rawpg import (
    RawClient,
    bind,
    errors_of,
    execute,
    msg,
    parse,
)

DB = "pooldb"


@pytest.fixture(scope="module")
def pooldb(pool_database, cluster):
    """pooldb with the review's tables, created straight on the primary and replicated."""
    with psycopg.connect(cluster.dsn(dbname=DB), autocommit=True, connect_timeout=10) as c:
        c.execute("create table if not exists txr_items (v int)")
        c.execute("create table if not exists txr_copy (v int)")
        c.execute("create table if not exists txr_lock (v int)")
        c.execute("grant all on txr_items, txr_copy, txr_lock to public")
    cluster.wait_replayed()
    return DB


def _daemon(factory, links=1, **extra):
    return factory({"pool_mode": "transaction", "backend_max_connections": links,
                    "max_pool": links, "checkout_timeout": 20, **extra}, hba=TRUST_HBA)


def _lb_daemon(factory, cluster, links=1, **extra):
    """Transaction mode with every read on the replica (primary weight 0)."""
    return factory({"pool_mode": "transaction", "backend_max_connections": links,
                    "max_pool": links, "checkout_timeout": 20,
                    "backends": backends(cluster, 0, 1), **extra})


def _client(pg, **params) -> RawClient:
    client = RawClient(pg.port)
    client.startup({"database": DB, **params})
    return client




def _sqlstates(msgs) -> list[str]:
    return [e["C"] for e in errors_of(msgs)]


def _status(msgs) -> str:
    return msgs[-1][1].decode()


def _direct(cluster):
    return psycopg.connect(cluster.dsn(dbname=DB), autocommit=True, connect_timeout=10)


def _truncate(cluster, table: str) -> None:
    with _direct(cluster) as c:
        c.execute(f"truncate {table}")


def _count(cluster, table: str) -> int:
    with _direct(cluster) as c:
        return c.execute(f"select count(*) from {table}").fetchone()[0]


# -- session state that PostgreSQL rolled back --------------------------------------------------


def _work_mem(c) -> str:
    return c.rows("select current_setting('work_mem')")[0][0]


# -- COPY and FunctionCall ----------------------------------------------------------------------


def _pbe(sql: str) -> bytes:
    return parse(sql) + bind() + execute()


def _function_call(oid: int, *args: bytes) -> bytes:
    body = struct.pack("!Ih", oid, 0) + struct.pack("!h", len(args))
    for a in args:
        body += struct.pack("!i", len(a)) + a
    return msg(b"F", body + struct.pack("!h", 0))

