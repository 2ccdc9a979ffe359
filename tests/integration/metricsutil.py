"""Helpers for the metrics-port tests: HTTP requests, the exposition parsed, a TCP forwarder
that stands in for a backend the test can take away."""

from __future__ import annotations

import http.client
import socket
import threading

from prometheus_client.parser import text_string_to_metric_families

from pgtwist.dev import devcluster as dc


def request(port: int, path: str, method: str = "GET") -> tuple[int, str, dict]:
    conn = http.client.HTTPConnection(dc.HOST, port, timeout=10)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), dict(resp.getheaders())
    finally:
        conn.close()


def scrape(port: int) -> dict:
    """{family name: [(sample name, labels, value)...]} of one /metrics page."""
    status, body, headers = request(port, "/metrics")
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers
    return {f.name: [(s.name, s.labels, s.value) for s in f.samples]
            for f in text_string_to_metric_families(body)}


def value(page: dict, family: str, sample: str | None = None, **labels) -> float:
    """The sum of ``family``'s samples named ``sample`` (default: the family's own name,
    or its _total / _count) whose labels include ``labels``."""
    names = {sample} if sample else {family, family + "_total", family + "_count"}
    return sum(v for name, got, v in page.get(family, [])
               if name in names and all(got.get(k) == str(w) for k, w in labels.items()))


class Forwarder:
    """127.0.0.1:port -> target; ``close()`` refuses new connections and cuts open ones."""

    def __init__(self, target_port: int, port: int = 0):
        self.target = (dc.HOST, target_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((dc.HOST, port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.open: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        try:
            # Wakes the thread blocked in accept(): a bare close() leaves the port bound
            # until that accept returns, and the port could not be taken again.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for s in self.open:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass
