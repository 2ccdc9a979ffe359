"""A raw-socket PostgreSQL protocol client and message builders, for tests that need
byte-level control of what a client sends (bad input, protocol edges, pipelining)."""

from __future__ import annotations

import socket
import struct
import time
import uuid

from ..frontend_messages import (  # noqa: F401 (the tests import the builders from here)
    CANCEL_REQUEST_CODE,
    COPY_DONE,
    FLUSH,
    GSSENC_REQUEST_CODE,
    PROTOCOL_3_0,
    SSL_REQUEST_CODE,
    SYNC,
    TERMINATE,
    bind,
    cancel_request,
    close,
    copy_data,
    copy_fail,
    cstr,
    describe,
    execute,
    gssenc_request,
    msg,
    parse,
    query,
    ssl_request,
    startup_packet,
)

SOCKET_TIMEOUT = 5.0


def error_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse / NoticeResponse fields by their one-letter code."""
    out = {}
    for part in body.rstrip(b"\0").split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out


def data_row(body: bytes) -> list[str | None]:
    (n,) = struct.unpack_from("!h", body)
    pos, values = 2, []
    for _ in range(n):
        (size,) = struct.unpack_from("!i", body, pos)
        pos += 4
        if size < 0:
            values.append(None)
        else:
            values.append(body[pos : pos + size].decode())
            pos += size
    return values


class RawClient:
    """A PostgreSQL v3 client on a plain socket, for sending exactly the bytes a test wants."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = SOCKET_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.key: tuple[int, int] | None = None
        self.parameters: dict[str, str] = {}

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, *chunks: bytes) -> None:
        self.sock.sendall(b"".join(chunks))

    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed with {len(self.buf)} of {n} bytes read")
            self.buf += data

    def read_byte(self) -> bytes:
        self._fill(1)
        b, self.buf = self.buf[:1], self.buf[1:]
        return b

    def read_msg(self) -> tuple[str, bytes]:
        """One backend message as (type letter, body)."""
        self._fill(5)
        code, length = struct.unpack_from("!cI", self.buf)
        self._fill(1 + length)
        body = self.buf[5 : 1 + length]
        self.buf = self.buf[1 + length :]
        return code.decode(), body

    def read_until(self, code: str = "Z", count: int = 1) -> list[tuple[str, bytes]]:
        """Messages up to and including the ``count``-th message of type ``code``."""
        out = []
        while count:
            m = self.read_msg()
            out.append(m)
            if m[0] == code:
                count -= 1
        return out

    def startup(self, params: dict[str, str] | None = None) -> list[tuple[str, bytes]]:
        params = {"user": "postgres", "database": "postgres", **(params or {})}
        self.send(startup_packet(params))
        return self.read_login()

    def read_login(self) -> list[tuple[str, bytes]]:
        msgs = self.read_until("Z")
        for code, body in msgs:
            if code == "E":
                raise AssertionError(f"login failed: {error_fields(body)}")
            if code == "K":
                self.key = struct.unpack("!II", body)
            if code == "S":
                name, value, _ = body.split(b"\0")
                self.parameters[name.decode()] = value.decode()
        return msgs

    def simple(self, sql: str) -> list[tuple[str, bytes]]:
        self.send(query(sql))
        return self.read_until("Z")

    def rows(self, sql: str) -> list[list[str | None]]:
        msgs = self.simple(sql)
        errors = [error_fields(b) for c, b in msgs if c == "E"]
        assert not errors, errors
        return [data_row(b) for c, b in msgs if c == "D"]

    def closed_by_peer(self, timeout: float = SOCKET_TIMEOUT) -> bool:
        """True if the peer closes (EOF or reset) within ``timeout`` and sends nothing more."""
        self.sock.settimeout(timeout)
        try:
            data = self.buf or self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(SOCKET_TIMEOUT)
        if data:
            raise AssertionError(f"expected the connection to close, got more bytes: {data!r}")
        return True


def rows_of(msgs: list[tuple[str, bytes]]) -> list[list[str | None]]:
    return [data_row(b) for c, b in msgs if c == "D"]


def errors_of(msgs: list[tuple[str, bytes]]) -> list[dict[str, str]]:
    return [error_fields(b) for c, b in msgs if c == "E"]


def codes_of(msgs: list[tuple[str, bytes]]) -> str:
    return "".join(c for c, _ in msgs)


def wait_no_backend(cluster, application_name: str, timeout: float = 3.0) -> None:
    """Wait until the primary has no session with ``application_name`` (checked directly)."""
    sql = f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application_name}'"
    deadline = time.monotonic() + timeout
    while (n := cluster.psql(sql)) != "0":
        if time.monotonic() > deadline:
            detail = cluster.psql(
                "SELECT state || ': ' || query FROM pg_stat_activity "
                f"WHERE application_name = '{application_name}'"
            )
            raise AssertionError(
                f"{n} backend session(s) of {application_name!r} still on the primary after "
                f"{timeout}s: {detail}"
            )
        time.sleep(0.05)


def unique_app(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"
