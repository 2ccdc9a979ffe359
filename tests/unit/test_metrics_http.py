"""The metrics site's resources, rendered with twisted.web's test requests over a real Proxy
(scripted servers): /metrics, /healthz, /readyz (503 without a primary or while draining),
404 for any other path, 405 for other methods."""

from __future__ import annotations

import pytest
from twisted.web import server
from twisted.web.resource import getChildForRequest
from twisted.web.test.requesthelper import DummyRequest

from pgtwist.metrics.http import make_site
from pgtwist.testing import ScriptedCluster


def _get(site, path: bytes, method: bytes = b"GET"):
    request = DummyRequest(path.lstrip(b"/").split(b"/") if path != b"/" else [b""])
    request.method = method
    request.uri = request.path = path
    resource = getChildForRequest(site.resource, request)
    try:
        body = resource.render(request)
    except Exception as exc:  # UnsupportedMethod -> 405 in a real Request
        return type(exc).__name__, b""
    assert body is not server.NOT_DONE_YET
    return request.responseCode or 200, body


@pytest.fixture
def proxy():
    return ScriptedCluster(nodes=2, metrics_port=9187).proxy


def test_metrics_page(proxy):
    site = make_site(proxy)
    status, body = _get(site, b"/metrics")
    text = body.decode()
    assert status == 200
    for name in ("pgtwist_info{", "pgtwist_query_duration_seconds_bucket{le=\"0.0001\"} 0.0",
                 "pgpool2_up 1.0", "pgpool2_scrapes_total 1.0", "pgtwist_ready 1.0"):
        assert name in text, name
    assert "pgpool2_scrapes_total 2.0" in _get(site, b"/metrics")[1].decode()


def test_probes(proxy):
    site = make_site(proxy)
    assert _get(site, b"/healthz") == (200, b"ok\n")
    assert _get(site, b"/readyz") == (200, b"ready: the primary is node 0 (127.0.0.1:5432)\n")
    proxy.cluster.nodes[0].role = "unknown"
    status, body = _get(site, b"/readyz")
    assert status == 503 and body.startswith(b"no primary known")
    proxy.cluster.nodes[0].role = "primary"
    proxy.draining = True
    assert _get(site, b"/readyz")[0] == 503
    assert _get(site, b"/healthz")[0] == 200


@pytest.mark.parametrize("path", [b"/", b"/nope", b"/metrics/x", b"/readyz/x", b"/healthz/a/b"])
def test_other_paths_are_not_found(proxy, path):
    status, body = _get(make_site(proxy), path)
    assert status == 404 and body.startswith(b"not found"), (path, status)


def test_other_methods_are_refused(proxy):
    assert _get(make_site(proxy), b"/metrics", b"POST")[0] == "UnsupportedMethod"


def test_pgpool2_families_come_from_the_show_rows(proxy):
    proxy.cluster.nodes[1].select_cnt = 7
    text = _get(make_site(proxy), b"/metrics")[1].decode()
    assert 'pgpool2_pool_nodes_select_cnt_total{hostname="127.0.0.1",port="5433",' \
           'role="standby"} 7.0' in text
    for name in ("pgpool2_pool_backend_stats_status{", "pgpool2_pool_health_check_stats_"
                 "total_count{", "pgpool2_pool_cache_cache_hit_ratio 0.0",
                 "pgpool2_frontend_total ", "pgpool2_backend_total "):
        assert name in text, name


def test_a_failing_view_marks_the_scrape_and_keeps_the_page(proxy, monkeypatch):
    from pgtwist.metrics import http

    def broken(name, proxy):
        raise RuntimeError("row model failed")

    monkeypatch.setattr(http, "view", broken)
    status, body = _get(make_site(proxy), b"/metrics")
    text = body.decode()
    assert status == 200
    assert "pgpool2_up 0.0" in text and "pgpool2_last_scrape_error 1.0" in text
    assert "pgtwist_info{" in text  # pgtwist's own families are still there
