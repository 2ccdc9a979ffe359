"""A short run of the daemon fuzzer (tests/fuzz/daemon.py) in each pool mode: generated
client sessions over real sockets against a real twistd, with no crash, no hang and no
disturbed sentinel session.  ``make fuzz`` runs the long version."""

from __future__ import annotations

import json

import pytest

from tests.fuzz import daemon

pytestmark = pytest.mark.integration

INPUTS = 300
SEED = 20261206


@pytest.fixture(scope="module")
def fuzz_cluster(cluster):
    daemon.prepare_cluster(cluster)
    return cluster


@pytest.mark.parametrize("pool_mode", ["session", "transaction"])
def test_daemon_fuzz_short(fuzz_cluster, pool_mode, tmp_path):
    summary = daemon.fuzz(fuzz_cluster, pool_mode, INPUTS, SEED, str(tmp_path), workers=8,
                          oracle_rate=0.05, log=lambda *a: None)
    saved = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    failures = [r for r in saved if r.get("failure") != "deviation"]
    assert summary["inputs"] == INPUTS, summary
    assert summary["sentinel_checks"] > 0, summary
    assert (summary["crashes"], summary["hangs"], summary["disturbed"]) == (0, 0, 0), (
        summary, failures[:3])
