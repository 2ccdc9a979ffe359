"""bench/'s pure helpers: /proc/PID/stat parsing, process-tree CPU, ratios, --base-rev targets."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench import cpu, report
from bench.__main__ import parse_args


def stat_line(pid, comm, ppid, utime, stime, cutime=0, cstime=0):
    # fields 1-2, state, ppid (4), pgrp..cminflt.. up to majflt (5-12), utime..cstime (14-17)
    middle = " ".join(["0"] * 9)  # fields 5-13
    return (f"{pid} ({comm}) S {ppid} {middle} {utime} {stime} {cutime} {cstime} 20 0 1 0 "
            "64136 3133440 381\n")


def test_parse_stat_sums_own_and_reaped_children_ticks():
    assert cpu.parse_stat(stat_line(7, "twistd", 1, 120, 30, 5, 2)) == (1, 157)


def test_parse_stat_counts_fields_from_the_last_parenthesis():
    # a command name may contain spaces and parentheses
    assert cpu.parse_stat(stat_line(9, "a) (b c", 4, 1, 2)) == (4, 3)


def test_parse_stat_reads_a_real_line():
    with open(f"/proc/{os.getpid()}/stat") as f:
        ppid, ticks = cpu.parse_stat(f.read())
    assert ppid == os.getppid()
    assert ticks >= 0


def test_tree_ticks_sums_the_root_and_all_descendants_only():
    procs = {
        1: (0, 1000),  # init: not in the tree
        10: (1, 5),  # pgpool main
        11: (10, 7),  # a child
        12: (11, 3),  # a grandchild
        20: (1, 100),  # an unrelated process
    }
    assert cpu.tree_ticks(procs, [10]) == 15
    assert cpu.tree_ticks(procs, [11, 20]) == 110
    assert cpu.tree_ticks(procs, [99]) == 0


def test_snapshot_sees_this_process_with_its_parent():
    procs = cpu.snapshot()
    assert procs[os.getpid()][0] == os.getppid()


def test_meter_measures_cpu_spent_by_a_process_tree():
    meter = cpu.CpuMeter([os.getpid()])
    with meter.measure(os.getpid()) as reading:
        sum(i * i for i in range(3_000_000))  # burn some CPU in this process
    assert reading.proxy_s > 0
    assert reading.server_s == reading.proxy_s
    assert reading.pgbench_s == 0
    figures = reading.per_txn(1000)
    assert figures["proxy_us"] == pytest.approx(reading.proxy_s * 1000, abs=0.1)


_BURN = "sum(i * i for i in range(2_000_000)); print(1, flush=True); input()"
#: a "proxy" that forks a child which burns CPU and stays, and one that burns CPU and exits
_FORKER = f"""
import subprocess, sys
burn = [sys.executable, "-c", {_BURN!r}]
alive = subprocess.Popen(burn, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
alive.stdout.readline()
subprocess.run(burn, input=b"\\n", stdout=subprocess.DEVNULL)
print("ready", flush=True)
sys.stdin.read()
"""


def test_tree_counts_live_children_and_the_time_of_reaped_ones():
    proc = subprocess.Popen([sys.executable, "-c", _FORKER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        procs = cpu.snapshot()
        children = [pid for pid, (ppid, _) in procs.items() if ppid == proc.pid]
        assert len(children) == 1  # the live burner; the other was reaped
        with open(f"/proc/{proc.pid}/stat") as f:
            cutime = int(f.read().rsplit(")", 1)[1].split()[13])
        assert cutime > 0  # the reaped burner's time, in the parent's cutime
        live = procs[children[0]][1]
        assert live > 0
        assert cpu.tree_ticks(procs, [proc.pid]) == procs[proc.pid][1] + live
    finally:
        proc.kill()
        proc.wait()


def test_meter_without_a_proxy_reports_none():
    with cpu.CpuMeter([]).measure(None) as reading:
        pass
    assert reading.per_txn(10)["proxy_us"] is None
    assert reading.per_txn(10)["server_us"] is None


def test_us_per_txn_and_median():
    assert cpu.us_per_txn(0.5, 10_000) == 50.0
    assert cpu.us_per_txn(0.5, 0) is None
    assert cpu.us_per_txn(None, 10) is None
    assert cpu.median([3, None, 1, 2]) == 2
    assert cpu.median([4, 1]) == 2.5
    assert cpu.median([None]) is None


def test_ratio_pairs_with_every_target():
    names = ["direct", "pgtwist", "pgtwist-lb", "base", "base-lb", "relay", "pgpool"]
    assert report.ratio_pairs(names) == [
        ("pgtwist", "direct"),
        ("pgtwist", "relay"),
        ("pgtwist", "pgpool"),
        ("pgtwist-lb", "direct"),
        ("pgtwist-lb", "pgtwist"),
        ("pgtwist", "base"),
        ("pgtwist-lb", "base-lb"),
    ]
    assert report.ratio_pairs(["direct", "relay"]) == []
    assert report.base_pairs(["pgtwist-lb", "base-lb", "base"]) == [("pgtwist-lb", "base-lb")]


def test_ratios_skip_missing_and_failed_values():
    values = {"pgtwist": 900.0, "base": 1000.0, "direct": None}
    pairs = [("pgtwist", "base"), ("pgtwist", "direct"), ("pgtwist-lb", "base-lb")]
    assert report.ratios(values, pairs) == {"pgtwist/base": 0.9}
    assert report.ratios(values, pairs, "cpu ") == {"cpu pgtwist/base": 0.9}


def test_table_aligns_columns():
    text = report.table(["name", "tps"], [["direct", "1,000"], ["pgtwist", "900"]], left=1)
    assert text.splitlines() == [
        "name       tps",
        "-------  -----",
        "direct   1,000",
        "pgtwist    900",
    ]


def test_base_rev_adds_the_twin_of_each_pgtwist_target():
    args = parse_args(["--base-rev", "HEAD", "--targets", "direct,pgtwist,pgtwist-lb"])
    assert args.targets == ["direct", "pgtwist", "pgtwist-lb", "base", "base-lb"]
    args = parse_args(["--base-rev", "HEAD", "--targets", "direct,pgtwist-lb"])
    assert args.targets == ["direct", "pgtwist-lb", "base-lb"]
    assert "pgtwist-lb" in parse_args([]).targets
    assert "base" not in parse_args([]).targets


def test_base_targets_need_base_rev():
    with pytest.raises(SystemExit):
        parse_args(["--targets", "direct,base"])


def test_interpolate_a_cumulative_counter():
    samples = [(0.0, 0), (1.0, 100), (2.0, 300)]
    assert cpu.interpolate(samples, -1) == 0
    assert cpu.interpolate(samples, 0.5) == 50
    assert cpu.interpolate(samples, 1.5) == 200
    assert cpu.interpolate(samples, 9) == 300
    assert cpu.interpolate([(0.0, 5), (0.0, 7)], 0.0) == 5


def test_window_per_txn_leaves_out_the_login_phase():
    reading = cpu.Reading()
    tick = 1 / cpu.CLK_TCK
    # logins cost 50 ticks in the first 0.5 s, then 10 ticks per 0.1 s for 1 s
    reading.samples = [(0.0, 0, 1000), (0.5, 50, 1000)]
    reading.samples += [(0.5 + 0.1 * i, 50 + 10 * i, 1000 + i) for i in range(1, 11)]
    out = reading.window_per_txn(1000, 0.5, 1.5)
    assert out["proxy_us"] == pytest.approx(100 * tick * 1000, rel=1e-3)
    assert out["server_us"] == pytest.approx(10 * tick * 1000, rel=1e-3)
    assert out["window_s"] == [0.5, 1.5]


def test_window_without_a_proxy_has_only_the_servers():
    reading = cpu.Reading(samples=[(0.0, None, 0), (1.0, None, 4)])
    out = reading.window_per_txn(10, 0, 1)
    assert out["proxy_us"] is None
    assert out["server_us"] == pytest.approx(4 / cpu.CLK_TCK * 1e5)


def test_meter_samples_during_the_run():
    with cpu.CpuMeter([os.getpid()]).measure(os.getpid(), every=0.01) as reading:
        sum(i * i for i in range(1_000_000))
    assert len(reading.samples) >= 3
    assert [s[0] for s in reading.samples] == sorted(s[0] for s in reading.samples)
