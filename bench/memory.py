"""Resident memory of a proxy per idle client connection.

Clients are raw asyncio sockets: each sends a v3 StartupMessage (user and
database ``postgres``, trust auth) and reads until ReadyForQuery, then stays
idle.  They are opened in concurrent batches; the proxy's VmRSS is read from
/proc before and after, with its open file descriptors as a check that every
client (and, for a proxy, its server link) is really there.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import asdict, dataclass

from pgtwist.dev import devcluster as dc

from .targets import open_fds, rss_kb

_STARTUP = b"user\0postgres\0database\0postgres\0application_name\0bench-idle\0\0"
STARTUP_PACKET = struct.pack("!ii", 8 + len(_STARTUP), 196608) + _STARTUP
TERMINATE = b"X\0\0\0\4"


@dataclass
class Measurement:
    target: str
    clients: int
    rss_before_kb: int
    rss_after_kb: int
    rss_after_close_kb: int
    fds_before: int
    fds_after: int
    seconds_to_open: float
    startup: bool

    @property
    def growth_kb(self) -> int:
        return self.rss_after_kb - self.rss_before_kb

    @property
    def kb_per_client(self) -> float:
        return self.growth_kb / self.clients if self.clients else 0.0

    def as_dict(self) -> dict:
        return dict(
            asdict(self), growth_kb=self.growth_kb, kb_per_client=round(self.kb_per_client, 2)
        )


async def _read_until_ready(reader: asyncio.StreamReader) -> None:
    while True:
        head = await reader.readexactly(5)
        code, length = head[:1], struct.unpack("!i", head[1:])[0]
        body = await reader.readexactly(length - 4)
        if code == b"Z":
            return
        if code == b"E":
            raise RuntimeError(f"server error during startup: {body!r}")
        if code == b"R" and struct.unpack("!i", body[:4])[0] != 0:
            raise RuntimeError("the server asked for a password; the benchmark expects trust")


async def _open_one(port: int, startup: bool, gate: asyncio.Semaphore):
    async with gate:
        reader, writer = await asyncio.open_connection(dc.HOST, port)
        if startup:
            writer.write(STARTUP_PACKET)
            await asyncio.wait_for(_read_until_ready(reader), 60)
        return reader, writer


async def _close_all(conns, startup: bool) -> None:
    for _reader, writer in conns:
        if startup:
            writer.write(TERMINATE)
        writer.close()
    await asyncio.gather(*(w.wait_closed() for _r, w in conns), return_exceptions=True)


def _settle(pid: int, want_fds: int | None = None, timeout: float = 15) -> None:
    """Give the proxy time to accept/close everything (fd count reaches ``want_fds``)."""
    deadline = time.monotonic() + timeout
    while want_fds is not None and time.monotonic() < deadline:
        if open_fds(pid) == want_fds:
            break
        time.sleep(0.05)
    time.sleep(0.5)


async def _open_many(port: int, count: int, startup: bool, gate: asyncio.Semaphore) -> list:
    """Open ``count`` clients; if any fails, close the others and raise the first error."""
    results = await asyncio.gather(
        *(_open_one(port, startup, gate) for _ in range(count)), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    conns = [r for r in results if not isinstance(r, BaseException)]
    if failed:
        await _close_all(conns, startup)
        first = failed[0]
        raise RuntimeError(
            f"{len(failed)} of {count} connections failed; first: {type(first).__name__}: {first}"
        )
    return conns


async def _measure(
    name: str, pid: int, port: int, clients: int, startup: bool, batch: int, fds_per_client: int
) -> Measurement:
    gate = asyncio.Semaphore(batch)
    # warm up: a few sessions open and close, so lazily imported code is not counted
    await _close_all(await _open_many(port, 8, startup, gate), startup)
    _settle(pid)
    fds_before, rss_before = open_fds(pid), rss_kb(pid)
    t0 = time.monotonic()
    conns = await _open_many(port, clients, startup, gate)
    opened = time.monotonic() - t0
    _settle(pid, fds_before + fds_per_client * clients)
    fds_after, rss_after = open_fds(pid), rss_kb(pid)
    await _close_all(conns, startup)
    _settle(pid, fds_before)
    return Measurement(
        name,
        clients,
        rss_before,
        rss_after,
        rss_kb(pid),
        fds_before,
        fds_after,
        round(opened, 2),
        startup,
    )


def measure(
    name: str,
    pid: int,
    port: int,
    clients: int,
    startup: bool = True,
    batch: int = 50,
    fds_per_client: int = 2,
) -> Measurement:
    """Open ``clients`` idle connections to ``port`` and report ``pid``'s RSS growth."""
    return asyncio.run(_measure(name, pid, port, clients, startup, batch, fds_per_client))
