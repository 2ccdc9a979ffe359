"""The real pcp_* tools (Debian's pgpool2) against a real pgtwist: setup and helpers for
tests/integration/test_pcp*.py."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from pgtwist.dev import devcluster as dc

SBIN = ("/usr/sbin", "/usr/bin")
USER, PASSWORD = "pcpadmin", "pcp-secret"


def pcp_binary(tool: str) -> str | None:
    for d in SBIN:
        path = os.path.join(d, tool)
        if os.access(path, os.X_OK):
            return path
    return shutil.which(tool)


def ensure_pcp_tools() -> None:
    """Install pgpool2 when its pcp_* tools are missing (as root), else skip."""
    if pcp_binary("pcp_node_count"):
        return
    if os.geteuid() != 0:
        pytest.skip("the pcp_* tools are missing (Debian package pgpool2) and installing "
                    "them needs root: run apt-get install pgpool2")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", "pgpool2"]):
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, timeout=600)
    if not pcp_binary("pcp_node_count"):
        pytest.fail("apt-get install pgpool2 did not provide pcp_node_count")


def pcp_conf(workdir: Path, users: dict[str, str]) -> Path:
    path = Path(workdir) / "pcp.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{u}:{hashlib.md5(p.encode()).hexdigest()}\n"
                            for u, p in users.items()))
    path.chmod(0o600)
    return path


class Pcp:
    """Runs one pcp_* tool against ``port`` with -w and a PCPPASSFILE."""

    def __init__(self, port: int, workdir: Path):
        self.port = port
        self.passfile = Path(workdir) / "pcppass"
        self.passfile.write_text(f"{dc.HOST}:{port}:{USER}:{PASSWORD}\n"
                                 f"{dc.HOST}:{port}:nobody:whatever\n"
                                 f"{dc.HOST}:{port}:wrongpw:not-it\n")
        self.passfile.chmod(0o600)

    def argv(self, tool: str, *args: str, user: str = USER) -> list[str]:
        return [pcp_binary(tool), "-h", dc.HOST, "-p", str(self.port), "-U", user, "-w", *args]

    def env(self) -> dict[str, str]:
        return dict(os.environ, PCPPASSFILE=str(self.passfile))

    def __call__(self, tool: str, *args: str, user: str = USER, timeout: float = 30):
        return subprocess.run(self.argv(tool, *args, user=user), capture_output=True,
                              text=True, env=self.env(), timeout=timeout)

    def popen(self, tool: str, *args: str, user: str = USER) -> subprocess.Popen:
        return subprocess.Popen(self.argv(tool, *args, user=user), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env())


def _exactly(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def raw(port: int, data: bytes, login: bool = False, timeout: float = 5) -> bytes:
    """Send ``data`` (after a login when asked) and read until the server closes or is
    quiet for ``timeout`` seconds."""
    with socket.create_connection((dc.HOST, port), timeout=timeout) as s:
        if login:
            s.sendall(b"M\x00\x00\x00\x04")
            salt = _exactly(s, 9)[5:9]
            md5 = lambda b: hashlib.md5(b).hexdigest().encode()  # noqa: E731
            digest = md5(md5(md5(PASSWORD.encode()) + USER.encode()) + salt)
            body = USER.encode() + b"\0" + digest + b"\0"
            s.sendall(b"R" + struct.pack("!i", len(body) + 4) + body)
            got = _exactly(s, 22)
            assert got == b"r\x00\x00\x00\x15AuthenticationOK\x00", got
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            out += b"<quiet>"
        return out


def fatal(message: str, detail: str) -> bytes:
    body = (b"SFATAL\0CXX000\0M" + message.encode() + b"\0D" + detail.encode() + b"\0\0")
    return b"E" + struct.pack("!i", len(body) + 4) + body
