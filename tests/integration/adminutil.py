"""Shared by the admin SQL tests: the reference's column lists (Pgpool-II behaviour
reference §4.1, written out here so a change in pgtwist cannot move both), clients and
helpers."""

from __future__ import annotations

import asyncio
import time

import psycopg

REFERENCE_COLUMNS = {
    "pool_nodes": "node_id, hostname, port, status, pg_status, lb_weight, role, pg_role, "
                  "select_cnt, load_balance_node, replication_delay, replication_state, "
                  "replication_sync_state, last_status_change",
    "pool_processes": "pool_pid, start_time, client_connection_count, database, username, "
                      "backend_connection_time, pool_counter, status",
    "pool_pools": "pool_pid, start_time, client_connection_count, pool_id, backend_id, "
                  "database, username, backend_connection_time, client_connection_time, "
                  "client_disconnection_time, client_idle_duration, majorversion, "
                  "minorversion, pool_counter, pool_backendpid, pool_connected, status, "
                  "load_balance_node, client_host, client_port, statement",
    "pool_status": "item, value, description",
    "pool_version": "pool_version",
    "pool_cache": "num_cache_hits, num_selects, cache_hit_ratio, num_hash_entries, "
                  "used_hash_entries, num_cache_entries, used_cache_entries_size, "
                  "free_cache_entries_size, fragment_cache_entries_size",
    "pool_backend_stats": "node_id, hostname, port, status, role, select_cnt, insert_cnt, "
                          "update_cnt, delete_cnt, ddl_cnt, other_cnt, panic_cnt, fatal_cnt, "
                          "error_cnt",
    "pool_health_check_stats": "node_id, hostname, port, status, role, last_status_change, "
                               "total_count, success_count, fail_count, skip_count, "
                               "retry_count, average_retry_count, max_retry_count, "
                               "max_duration, min_duration, average_duration, "
                               "last_health_check, last_successful_health_check, "
                               "last_skip_health_check, last_failed_health_check",
}
REFERENCE_COLUMNS = {k: v.split(", ") for k, v in REFERENCE_COLUMNS.items()}
TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
TIMEOUT = 20


def connect(pg, **kw) -> psycopg.Connection:
    kw.setdefault("autocommit", True)
    kw.setdefault("prepare_threshold", None)  # parameterless execute(): a simple Query
    kw.setdefault("connect_timeout", 5)
    return psycopg.connect(pg.dsn(), **kw)


def show(conn, sql: str, **kw) -> tuple[list[str], list[tuple]]:
    cur = conn.execute(sql, **kw)
    assert [c.type_code for c in cur.description] == [0] * len(cur.description)
    return [c.name for c in cur.description], cur.fetchall()


def table(conn, sql: str, key: int = 0, **kw) -> dict[str, dict[str, str]]:
    names, rows = show(conn, sql, **kw)
    return {row[key]: dict(zip(names, row, strict=True)) for row in rows}


def wait_for(what, timeout: float = TIMEOUT, step: float = 0.2):
    """Poll ``what()`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        found = what()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(step)


def arun(coro):
    async def bounded():
        return await asyncio.wait_for(coro, TIMEOUT)

    return asyncio.run(bounded())
