"""PCP commands on a real Cluster model (no sockets): reply bytes, node changes, errors,
the stop modes; the pcp_* config keys; the service's listeners."""

from __future__ import annotations

import pytest
from twisted.internet.testing import MemoryReactorClock

from pgtwist.cluster import Cluster
from pgtwist.config import ConfigError, parse_config
from pgtwist.config_values import listen_interfaces
from pgtwist.pcp import codec
from pgtwist.pcp.commands import CommandError, Commands
from pgtwist.pcp.service import PcpService

NODES = [{"hostname": "db0", "port": 5432, "weight": 1, "flag": "ALWAYS_PRIMARY"},
         {"hostname": "db1", "port": 5433, "weight": 3},
         {"hostname": "db2", "port": 5434, "weight": 0, "flag": "DISALLOW_TO_FAILOVER"}]


class FakeProxy:
    def __init__(self, **extra):
        self.config = parse_config({"backends": NODES, **extra}, check_files=False)
        self.reactor = MemoryReactorClock()
        self.cluster = Cluster(self.reactor, self.config, lambda user: None)
        self.sessions: dict = {}
        self.ports: list = []
        self.reloads = 0

    def reload(self):
        self.reloads += 1


def commands(**extra):
    proxy = FakeProxy(**extra)
    stops = []
    return Commands(proxy, proxy.reactor, stops.append), proxy, stops


def test_node_count():
    c, _, _ = commands()
    assert c.run("L", b"") == b"l\x00\x00\x00\x16CommandComplete\x003\x00"


def test_node_info_one_node_in_pgpool_4_3_layout():
    c, proxy, _ = commands()
    node = proxy.cluster.nodes[1]
    node.set_status("up")
    node.pg_status, node.pg_role, node.replication_delay = "up", "standby", 1234.0
    node.replication_state, node.replication_sync_state = "streaming", "async"
    node.last_status_change = "2026-12-06 14:39:16"
    import time

    epoch = int(time.mktime(time.strptime("2026-12-06 14:39:16", "%Y-%m-%d %H:%M:%S")))
    weight = f"{0.75 * codec.RAND_MAX:f}"     # 3 of 4, scaled as Pgpool-II sends it
    assert c.run("I", b"1\x00") == (
        codec.reply("i", "ArraySize", 1)
        + codec.reply("i", "NodeInfo", "db1", 5433, 2, 0, "up", weight, 3, "standby", 1234,
                      "streaming", "async", epoch)
        + codec.reply("i", "CommandComplete"))


def test_node_info_all_and_bad_ids():
    c, _, _ = commands()
    out = c.run("I", b"-1\x00")
    assert out.startswith(codec.reply("i", "ArraySize", 3)) and out.count(b"NodeInfo\x00") == 3
    for payload, shown in ((b"3\x00", "3"), (b"x\x00", "x"), (b"", "")):
        with pytest.raises(CommandError) as info:
            c.run("I", payload)
        assert (info.value.message, info.value.detail) == (
            "informing node info failed", f"invalid node ID : {shown}")


def test_detach_attach_act_on_the_cluster_view():
    c, proxy, _ = commands()
    cluster = proxy.cluster
    version = cluster.version
    assert c.run("D", b"1\x00") == codec.reply("d", "CommandComplete")
    assert cluster.nodes[1].detached and cluster.view().nodes[1].status == "down"
    assert cluster.version > version
    assert c.run("C", b"1\x00") == codec.reply("c", "CommandComplete")
    assert not cluster.nodes[1].detached and cluster.view().nodes[1].status == "up"
    with pytest.raises(CommandError, match="detach node failed"):
        c.run("D", b"2\x00")    # DISALLOW_TO_FAILOVER
    with pytest.raises(CommandError, match="attach node failed"):
        c.run("C", b"9\x00")


def test_graceful_detach_waits_for_sessions_then_detaches():
    c, proxy, _ = commands()

    class Relay:
        closed = False

    proxy.sessions[7] = Relay()
    got = []
    c.run("d", b"1\x00").addCallback(got.append)
    proxy.reactor.advance(1)
    assert got == [] and not proxy.cluster.nodes[1].detached
    del proxy.sessions[7]
    proxy.reactor.advance(0.2)
    assert got == [codec.reply("d", "CommandComplete")] and proxy.cluster.nodes[1].detached


def test_graceful_detach_gives_up_after_recovery_timeout():
    c, proxy, _ = commands(recovery_timeout=2)

    class Relay:
        closed = False

    proxy.sessions[7] = Relay()
    failures = []
    c.run("d", b"1\x00").addErrback(failures.append)
    proxy.reactor.advance(2.1)
    assert failures and failures[0].value.detail == (
        "clients still connected after recovery_timeout (2 s)")
    assert not proxy.cluster.nodes[1].detached


def test_promote_changes_roles_only_in_the_view():
    c, proxy, _ = commands()
    with pytest.raises(CommandError) as info:
        c.run("J", b"0 \x00")
    assert info.value.detail == "specified node is already primary node, can't promote node id 0"
    with pytest.raises(CommandError) as info:
        c.run("J", b"1 \x00n")
    assert info.value.detail == ("node 0 is flagged ALWAYS_PRIMARY: the primary is set in the "
                                 "configuration")
    assert [n.role for n in proxy.cluster.nodes] == ["primary", "standby", "standby"]
    c, proxy, _ = commands(backends=[{**NODES[0], "flag": ""}, *NODES[1:]])
    proxy.cluster.nodes[0].role = "primary"     # as a role check would find
    assert c.run("J", b"1 \x00n") == codec.reply("d", "CommandComplete")
    assert [n.role for n in proxy.cluster.nodes] == ["standby", "primary", "unknown"]
    assert proxy.cluster.view().primary_id == 1


def test_reload_and_stop():
    c, proxy, stops = commands()
    assert c.run("Z", b"l") == codec.reply("z", "CommandComplete") and proxy.reloads == 1
    assert c.run("T", b"f") == codec.reply("t", "CommandComplete")
    assert stops == []                      # after the reply is written
    proxy.reactor.advance(0)
    assert stops == ["f"]
    with pytest.raises(CommandError, match="invalid shutdown mode"):
        c.run("T", b"x")


def test_health_check_stats_row():
    c, _, _ = commands()
    out = c.run("H", b"0\x00")
    fields = codec.split_strings(out[5:])
    assert fields[:6] == ["CommandComplete", "0", "db0", "5432", "waiting", "primary"]
    assert len(fields) == 21


# -- configuration and listeners -------------------------------------------------------------

@pytest.mark.parametrize("value", [0, "", "0"])
def test_pcp_port_zero_or_empty_means_off(value):
    config = parse_config({"backends": NODES, "pcp_port": value}, check_files=False)
    assert config.params["pcp_port"] == 0


def test_pcp_port_out_of_range_names_the_key():
    with pytest.raises(ConfigError, match="pcp_port: expected an integer 0-65535"):
        parse_config({"backends": NODES, "pcp_port": 70000}, check_files=False)


def test_pcp_conf_file_resolves_next_to_the_config():
    config = parse_config({"backends": NODES}, path="/etc/pgtwist/pgpool.yaml",
                          check_files=False)
    assert config.params["pcp_conf_file"] == "/etc/pgtwist/pcp.conf"
    assert config.params["pcp_socket_dir"] == ""


def test_listen_interfaces():
    assert listen_interfaces("localhost, 10.0.0.1") == ["127.0.0.1", "10.0.0.1"]
    assert listen_interfaces("*") == ["0.0.0.0", "::"]


def test_service_listens_only_when_asked(tmp_path):
    proxy = FakeProxy(pcp_port=0)
    PcpService(proxy, proxy.reactor).startService()
    assert proxy.reactor.tcpServers == [] and proxy.reactor.unixServers == []
    proxy = FakeProxy(pcp_port=9898, pcp_listen_addresses="*", pcp_socket_dir=str(tmp_path))
    PcpService(proxy, proxy.reactor).startService()
    assert [(s[0], s[3]) for s in proxy.reactor.tcpServers] == [(9898, "0.0.0.0"), (9898, "::")]
    assert proxy.reactor.unixServers[0][0] == str(tmp_path / ".s.PGSQL.9898")


def test_smart_stop_stops_accepting_and_waits_for_sessions():
    proxy = FakeProxy()

    class Port:
        listening = True

        def stopListening(self):
            self.listening = False

    class Relay:
        closed = False

    port, relay = Port(), Relay()
    proxy.ports = [port]
    proxy.sessions[1] = relay
    stopped = []
    proxy.reactor.stop = lambda: stopped.append(True)
    service = PcpService(proxy, proxy.reactor)
    service.stop_daemon("s")
    assert not port.listening and proxy.ports == [] and stopped == []
    proxy.reactor.advance(1)
    assert stopped == []
    relay.closed = True
    proxy.reactor.advance(0.2)
    assert stopped == [True]
    service.stop_daemon("f")
    assert stopped == [True, True]
