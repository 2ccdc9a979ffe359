"""The custom routing policy shown in README.md loads from a plugin directory and routes."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from zope.interface.verify import verifyObject

import plugins
from pgtwist.config import parse_config
from pgtwist.interfaces import IRoutingPolicy
from pgtwist.registry import build_chain
from pgtwist.routing.values import Target
from pgtwist.sql.info import EITHER, QueryInfo
from pgtwist.testing import fake_cluster, fake_session, make_request

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    text = README.read_text()
    found = re.search(r"<!-- policy-example -->\s*```python\n(.*?)```", text, re.DOTALL)
    assert found, "README.md lost its policy example"
    return found.group(1)


@pytest.fixture
def policy_dir(tmp_path):
    (tmp_path / "readme_reporting.py").write_text(_example())
    before = set(sys.modules)
    path_before = list(plugins.__path__)
    yield tmp_path
    plugins.__path__[:] = path_before
    for name in set(sys.modules) - before:
        if name.startswith("plugins."):
            del sys.modules[name]


def test_readme_policy_is_found_and_routes_reporting_reads(policy_dir):
    config = parse_config(
        {
            "backends": [{"hostname": "p", "flag": "ALWAYS_PRIMARY"}, {"hostname": "r"}],
            "routing": {
                "plugin_paths": [str(policy_dir)],
                "policies": ["statement", {"name": "reporting", "node": 1}, "weighted_balancer"],
            },
        },
        path=None,
        env={},
    )
    chain = build_chain(config)
    assert chain.names == ("statement", "reporting", "weighted_balancer")
    verifyObject(IRoutingPolicy, chain.policy("reporting"))
    read = QueryInfo(command="SELECT", route=EITHER, is_read=True)
    cluster = fake_cluster(2, primary=0)
    reporting = make_request(query=read, cluster=cluster,
                             session=fake_session(application_name="reporting", lb_node=0))
    decision = chain.route(reporting)
    assert (decision.target, decision.node, decision.policy) == (Target.NODE, 1, "reporting")
    other = make_request(query=read, cluster=cluster,
                         session=fake_session(application_name="web", lb_node=0))
    assert chain.route(other).policy == "weighted_balancer"


def test_readme_policy_rejects_bad_options(policy_dir):
    from pgtwist.config import ConfigError

    config = parse_config(
        {
            "backends": [{"hostname": "p"}],
            "routing": {"plugin_paths": [str(policy_dir)],
                        "policies": [{"name": "reporting", "node": "one"}]},
        },
        path=None,
        env={},
    )
    with pytest.raises(ConfigError, match=r"routing\.policies\[0\]\.node"):
        build_chain(config)
