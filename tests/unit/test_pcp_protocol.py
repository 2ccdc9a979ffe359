"""The PCP protocol shell over a StringTransport: login against a pcp.conf file, one
command at a time (reading paused while one waits), ERROR keeps the connection, the
connection cap and the idle timeout."""

from __future__ import annotations

import struct

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock, StringTransport

from pgtwist.pcp import codec
from pgtwist.pcp.commands import CommandError
from pgtwist.pcp.protocol import IDLE_TIMEOUT, MAX_CONNECTIONS, PcpFactory

SALT = b"\x01\x02\x03\x04"


class FakeCommands:
    def __init__(self):
        self.pending = None

    def run(self, letter, payload):
        if letter == "L":
            return codec.reply("l", "CommandComplete", 2)
        if letter == "d":
            self.pending = defer.Deferred()
            return self.pending
        raise CommandError("informing node info failed", "invalid node ID : 5")


def factory(tmp_path, users=("admin",)):
    conf = tmp_path / "pcp.conf"
    conf.write_text("".join(f"{u}:{codec.md5hex(b'secret')}\n" for u in users))
    conf.chmod(0o600)
    f = PcpFactory(MemoryReactorClock(), FakeCommands(), str(conf))
    f.salt = lambda: SALT
    return f


def connect(f):
    proto = f.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def login_bytes(user="admin", password="secret"):
    body = user.encode() + b"\0" + codec.client_hash(password, user, SALT).encode() + b"\0"
    return b"M\x00\x00\x00\x04R" + struct.pack("!i", len(body) + 4) + body


def test_login_and_commands_against_the_file(tmp_path):
    f = factory(tmp_path)
    proto, t = connect(f)
    proto.dataReceived(login_bytes() + b"L\x00\x00\x00\x04I\x00\x00\x00\x065\x00")
    assert t.value() == (codec.packet("m", SALT) + codec.reply("r", "AuthenticationOK")
                         + codec.reply("l", "CommandComplete", 2)
                         + codec.error("ERROR", "informing node info failed",
                                       "invalid node ID : 5"))
    assert t.connected                   # an ERROR keeps the connection
    proto.dataReceived(b"X\x00\x00\x00\x04")
    assert t.disconnecting


def test_wrong_password_closes(tmp_path):
    proto, t = connect(factory(tmp_path))
    proto.dataReceived(login_bytes(password="nope"))
    assert t.value().endswith(codec.error("FATAL", 'authentication failed for user "admin"',
                                          "username and/or password does not match"))
    assert t.disconnecting


def test_a_waiting_command_pauses_reading_and_keeps_order(tmp_path):
    f = factory(tmp_path)
    proto, t = connect(f)
    proto.dataReceived(login_bytes())
    t.clear()
    proto.dataReceived(b"d\x00\x00\x00\x061\x00L\x00\x00\x00\x04")
    assert t.value() == b"" and t.producerState == "paused"
    f.commands.pending.callback(codec.reply("d", "CommandComplete"))
    assert t.value() == codec.reply("d", "CommandComplete") + codec.reply("l", "CommandComplete", 2)
    assert t.producerState == "producing"


def test_connection_cap_and_idle_timeout(tmp_path):
    f = factory(tmp_path)
    conns = [connect(f) for _ in range(MAX_CONNECTIONS)]
    extra, t = connect(f)
    assert t.disconnecting and len(f.open) == MAX_CONNECTIONS
    f.reactor.advance(IDLE_TIMEOUT - 1)
    conns[0][0].dataReceived(b"M\x00\x00\x00\x04")     # activity resets its timer
    f.reactor.advance(2)
    assert conns[0][1].connected and not conns[0][1].disconnecting
    assert conns[1][1].disconnecting
