"""Transaction pooling edge cases the way applications meet them: asyncpg's statement
cache over a small server bound, psycopg pipeline mode.
"""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg
import pytest

from .conftest import assert_log_clean
from .txnedge_util import (
    DB,
    _daemon,
    pooldb,  # noqa: F401  (a fixture)
)

pytestmark = pytest.mark.integration


# -- drivers -----------------------------------------------------------------------------------------


def test_asyncpg_statement_cache_over_a_small_server_bound(pooldb, pgtwist_factory):
    pg = _daemon(pgtwist_factory, links=2, max_prepared_statements=2)

    async def client(k: int) -> None:
        conn = await asyncpg.connect(host=pg.host, port=pg.port, user="postgres", database=DB,
                                     statement_cache_size=8)
        try:
            for i in range(40):
                q = i % 6
                got = await conn.fetchval(f"select $1::int + {q}", i)
                assert got == i + q
                if i % 10 == 0:
                    async with conn.transaction():
                        assert await conn.fetchval("select $1::int * 3", i) == i * 3
                        assert await conn.fetchval(f"select $1::int + {q}", 1) == 1 + q
        finally:
            await conn.close()

    async def main():
        await asyncio.wait_for(asyncio.gather(*(client(k) for k in range(4))), 30)

    asyncio.run(main())
    assert_log_clean(pg)


def test_psycopg_pipeline_with_prepare_threshold_zero(pooldb, pgtwist_factory, cluster):
    pg = _daemon(pgtwist_factory, links=1)
    with psycopg.connect(pg.dsn(dbname=DB), autocommit=True, prepare_threshold=0) as a, \
            psycopg.connect(pg.dsn(dbname=DB), autocommit=True, prepare_threshold=0) as b:
        for k in range(3):
            with a.pipeline():
                curs = [a.execute("select %s::int + %s::int", [i, k]) for i in range(5)]
                curs.append(a.execute("select %s::text", [f"k{k}"]))
            assert [c.fetchone()[0] for c in curs[:5]] == [i + k for i in range(5)]
            assert curs[5].fetchone() == (f"k{k}",)
            assert b.execute("select %s::int", [k]).fetchone() == (k,)
        with pytest.raises(psycopg.errors.DivisionByZero), a.pipeline():
            a.execute("select %s::int", [1])
            a.execute("select 1 / %s::int", [0])
        assert a.execute("select %s::int + %s::int", [1, 1]).fetchone() == (2,)
    assert_log_clean(pg)

