"""flip.yml, canary.yml and rollback.yml against three gateways, in static mode (weights per
gateway, state file) and in Consul mode (weights in devconsul's KV, shared): the traffic counted
at the upstreams moves, reruns and --check change nothing, conflicts and unready gateways fail."""

import datetime
import http.server
import json
import re
import threading

import pytest

from conftest import HOSTS, Load, Site, admin, get

ROUTE = ["-e", "gateway_traffic_route=web"]
CANARY = ROUTE + ["-e", "gateway_traffic_canary_backend=green",
                  "-e", '{"gateway_traffic_canary_steps": [20, 100]}',
                  "-e", "gateway_traffic_canary_interval_seconds=2",
                  "-e", "gateway_traffic_canary_min_requests=1",
                  "-e", "gateway_traffic_canary_max_error_rate=0.05"]


@pytest.fixture(scope="module", params=["static", "consul"])
def site(request, tmp_path_factory, build_v1):
    consul = request.param == "consul"
    s = Site(tmp_path_factory.mktemp(request.param), consul=consul, build=build_v1)
    s.playbook("site.yml", *([] if consul else ["--limit", "gateways"]))
    yield s
    s.close()


def spread(site, n=30):
    """n requests on every gateway; returns the hits counted at (blue, green)."""
    site.blue.take()
    site.green.take()
    for host in HOSTS:
        for _ in range(n):
            assert get(site.ports[host]["proxy"])[0] in (200, 500)
    return site.blue.take(), site.green.take()


def weights(site, host):
    route = admin(site.ports[host]["admin"], "/v1/routes/web")["route"]
    return {b["name"]: b["weight"] for b in route["backends"]}


def test_flip_moves_the_traffic_and_records_who_and_why(site):
    assert spread(site) == (90, 0)
    _, out, recap = site.playbook("flip.yml", *ROUTE, "-e", "gateway_traffic_flip_to=green",
                                  "-e", "gateway_traffic_reason=release-2.3")
    assert sum(r["changed"] for r in recap.values()) >= 1
    assert spread(site) == (0, 90)
    for host in HOSTS:
        last = admin(site.ports[host]["admin"], "/v1/routes/web")["history"][-1]
        assert last["changed_by"].startswith("ansible:") and "release-2.3" in last["reason"], last
        # When: stamped by the gateway (RFC 3339), within this test's run.
        when = datetime.datetime.fromisoformat(last["changed_at"].replace("Z", "+00:00"))
        assert abs(datetime.datetime.now(datetime.timezone.utc) - when) < datetime.timedelta(minutes=10)
    _, out, recap = site.playbook("flip.yml", *ROUTE, "-e", "gateway_traffic_flip_to=green")
    assert all(r["changed"] == 0 for r in recap.values()), out[-3000:]
    _, out, recap = site.playbook("flip.yml", *ROUTE, "-e", "gateway_traffic_flip_to=blue",
                                  "--check")
    assert all(r["changed"] == 0 for r in recap.values()), out[-3000:]
    assert spread(site) == (0, 90)


def test_a_stale_revision_fails_with_the_conflict_message(site):
    revision = admin(site.ports["gw1"]["admin"], "/v1/routes/web")["route"]["weights"]["revision"]
    assert revision > 0
    code, out, _ = site.playbook("flip.yml", *ROUTE, "-e", "gateway_traffic_flip_to=blue",
                                 "-e", "gateway_traffic_expected_revision=0", check=False)
    assert code != 0
    assert f"it is at revision {revision}, not 0" in out, out[-3000:]
    assert weights(site, "gw1") == {"blue": 0, "green": 100}


def test_rollback_returns_to_the_previous_weights_once(site):
    _, out, recap = site.playbook("rollback.yml", *ROUTE, "--check")
    assert all(r["changed"] == 0 for r in recap.values()), out[-3000:]
    assert all(weights(site, h) == {"blue": 0, "green": 100} for h in HOSTS)
    _, out, recap = site.playbook("rollback.yml", *ROUTE)
    assert sum(r["changed"] for r in recap.values()) >= 1
    assert spread(site) == (90, 0)
    _, out, recap = site.playbook("rollback.yml", *ROUTE)
    assert all(r["changed"] == 0 for r in recap.values()), out[-3000:]
    assert all(weights(site, h) == {"blue": 100, "green": 0} for h in HOSTS)


def test_a_failing_green_canary_is_rolled_back(site):
    site.green.status = 500
    try:
        with Load(site, rate=60, ports=[site.ports["gw1"]["proxy"]]):
            code, out, _ = site.playbook("canary.yml", *CANARY, "--limit", "gw1", check=False)
    finally:
        site.green.status = 200
    assert code != 0
    assert "rolled back to" in out and "guard failed at 20%" in out, out[-3000:]
    assert weights(site, "gw1") == {"blue": 100, "green": 0}
    history = admin(site.ports["gw1"]["admin"], "/v1/routes/web")["history"]
    assert [h["weights"]["green"] for h in history[-2:]] == [20, 0]
    assert history[-1]["reason"].startswith("rollback: canary")


def test_a_canary_over_its_p99_objective_is_rolled_back(site):
    """The latency guard reads the canary's per-second p99 from /v1/stats: with an objective no
    real request meets (1 µs), the first step fails on p99 alone (no 5xx) and is rolled back."""
    with Load(site, rate=60, ports=[site.ports["gw1"]["proxy"]]) as load:
        code, out, _ = site.playbook("canary.yml", *CANARY, "--limit", "gw1",
                                     "-e", "gateway_traffic_canary_max_p99_ms=0.001", check=False)
    assert load.failures == [], load.failures[:5]
    assert code != 0 and "guard failed at 20%" in out and "error rate 0.0000" in out, out[-3000:]
    p99 = float(re.search(r"p99 ([0-9.]+) ms \(max 0.001 ms\)", out).group(1))
    assert p99 > 0.001, out[-3000:]
    assert weights(site, "gw1") == {"blue": 100, "green": 0}


def test_a_healthy_canary_completes_and_a_rerun_changes_nothing(site):
    _, out, recap = site.playbook("canary.yml", *CANARY, "--check")
    assert all(r["changed"] == 0 for r in recap.values()), out[-3000:]
    assert all(weights(site, h) == {"blue": 100, "green": 0} for h in HOSTS)
    every_gateway = [p["proxy"] for p in site.ports.values()]
    with Load(site, rate=90, ports=every_gateway) as load:
        _, out, _ = site.playbook("canary.yml", *CANARY)
    assert load.failures == [], load.failures[:5]
    assert "step 20% passed" in out and "step 100% passed" in out, out[-3000:]
    # Judged on the numbers of every gateway of the play, not only the one that acts.
    assert "passed over 3 gateways" in out, out[-3000:]
    assert spread(site) == (0, 90)
    _, out, recap = site.playbook("canary.yml", *CANARY)
    assert all(r["changed"] == 0 for r in recap.values()), out[-3000:]


def test_playbooks_refuse_a_gateway_that_is_not_ready(site):
    class Draining(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps({"ready": False, "draining": True, "config_ok": True}).encode()
            self.send_response(503)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Draining)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d" % server.server_address[1]
        for playbook, extra in (("flip.yml", ["-e", "gateway_traffic_flip_to=blue"]),
                                ("canary.yml", CANARY[2:]), ("rollback.yml", [])):
            code, out, _ = site.playbook(playbook, *ROUTE, *extra, "--limit", "gw1",
                                         "-e", f"gateway_traffic_admin_url={url}", check=False)
            assert code != 0 and "Refuse to act on a gateway that is not ready" in out, out[-2000:]
    finally:
        server.shutdown()
        server.server_close()
    assert weights(site, "gw1") == {"blue": 0, "green": 100}
