import asyncio
from pathlib import Path

import asyncpg

from hyperhive.migrate import migrate


async def test_migrations_apply_once_in_order_even_when_run_concurrently(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0002_b.sql").write_text("INSERT INTO t VALUES (2);")
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE t (n int); INSERT INTO t VALUES (1);")
    (tmp_path / "notes.txt").write_text("not a migration")
    conns = [await asyncpg.connect(database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c, "demo", tmp_path) for c in conns))
        assert sorted(map(tuple, results)) == [(), (), ("0001_a.sql", "0002_b.sql")]
        assert [r["n"] for r in await conns[0].fetch("SELECT n FROM t ORDER BY n")] == [1, 2]
        assert await migrate(conns[0], "demo", tmp_path) == []
    finally:
        for c in conns:
            await c.close()


async def test_each_test_gets_a_fresh_database(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert not await conn.fetchval("SELECT to_regclass('t') IS NOT NULL")
    finally:
        await conn.close()
