"""rolling_update.yml against three gateways in Consul mode (devconsul installed as the Consul
agent by the consul role), under steady load from a client that follows Consul like a load
balancer: no failed request, every gateway on the new build; a bad config on the second host
stops the roll with that host in service on its old version and the third host untouched."""

import json
import urllib.parse
import urllib.request

import pytest

from conftest import HOSTS, Load, Site, admin, make_build, sha256
from test_converge import BROKEN_ROUTES, extra_inventory


@pytest.fixture(scope="module")
def site(tmp_path_factory, build_v1):
    s = Site(tmp_path_factory.mktemp("rolling"), consul=True, build=build_v1)
    s.playbook("site.yml")
    yield s
    s.close()


def release_of(site, host):
    return site.exe(host).rsplit("-", 1)[-1]


def assert_in_service(site, host):
    ready = admin(site.ports[host]["admin"], "/readyz")
    assert ready["ready"] and not ready["draining"] and ready["config_ok"], ready
    checks = admin(site.consul_port, "/v1/agent/checks", token="")
    assert not [c for c in checks if c.startswith("meshgate-maintenance:")], checks


def test_the_roll_moves_every_gateway_to_the_new_build_with_no_failed_request(site, tmp_path):
    v2 = make_build(tmp_path / "build-v2", marker=b"\nmeshgate-test-v2\n")
    new = sha256(v2 / "gatewayd")[:16]
    old_pids = {h: site.pid(h) for h in HOSTS}
    assert all(release_of(site, h) != new for h in HOSTS)
    with Load(site) as load:
        _, out, recap = site.playbook("rolling_update.yml", "-e", f"gatewayd_build_dir={v2}")
    print(f"rolling update: {load.ok} requests served, {len(load.failures)} failed")
    assert load.failures == [], load.failures[:10]
    assert load.ok > 200
    for host in HOSTS:
        assert recap[host]["failed"] == 0
        assert release_of(site, host) == new, host
        assert site.pid(host) != old_pids[host]
        assert_in_service(site, host)
    # One host at a time: the batches are 1, 25 % (one of three) and the rest.
    assert out.count("PLAY [Roll gatewayd out]") == 3, out


def test_a_bad_config_on_the_second_host_stops_the_roll(site, tmp_path):
    before = {h: (site.pid(h), release_of(site, h)) for h in HOSTS}
    v3 = make_build(tmp_path / "build-v3", marker=b"\nmeshgate-test-v3\n")
    new = sha256(v3 / "gatewayd")[:16]
    inventory = extra_inventory(tmp_path, "gw2", BROKEN_ROUTES)
    with Load(site) as load:
        code, out, recap = site.playbook("rolling_update.yml", "-e", f"gatewayd_build_dir={v3}",
                                         extra_inventory=inventory, check=False)
    print(f"stopped roll: {load.ok} requests served, {len(load.failures)} failed")
    assert code != 0
    assert load.failures == [], load.failures[:10]
    assert release_of(site, "gw1") == new
    assert recap["gw2"]["failed"] == 1 and "failed to validate" in out
    assert (site.pid("gw2"), release_of(site, "gw2")) == before["gw2"]
    assert "gw3" not in recap or recap["gw3"]["changed"] == 0
    assert (site.pid("gw3"), release_of(site, "gw3")) == before["gw3"]
    for host in HOSTS:
        assert_in_service(site, host)


def test_the_final_check_fails_when_a_gateway_is_left_in_maintenance(site):
    """The roll's last play is a real check: a gateway whose registration still carries a
    maintenance check (as a roll killed between its two steps would leave it) fails it."""
    services = admin(site.consul_port, "/v1/agent/services", token="")
    admin_port = site.ports["gw3"]["admin"]
    service_id = next(k for k, v in services.items()
                      if v["Service"] == "meshgate" and v["Port"] == admin_port)
    check_id = f"meshgate-maintenance:{admin_port}:{service_id}"
    consul = f"http://127.0.0.1:{site.consul_port}"
    put(f"{consul}/v1/agent/check/register", {"ID": check_id, "Name": "left over",
                                              "ServiceID": service_id, "TTL": "1h",
                                              "Status": "critical"})
    try:
        code, out, recap = site.playbook("rolling_update.yml", "--start-at-task", "Check /readyz",
                                         check=False)
    finally:
        put(f"{consul}/v1/agent/check/deregister/{urllib.parse.quote(check_id, safe='')}")
    assert code != 0
    assert recap["gw3"]["failed"] == 1 and check_id in out, out[-3000:]
    assert recap["gw1"]["failed"] == 0 and recap["gw2"]["failed"] == 0
    assert "Take the gateway out of rotation" not in out


def put(url, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(url, data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
