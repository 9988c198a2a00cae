"""The gatewayd role converged for real into a throw-away root (connection local, init script):
it serves, converges again with no change, checks clean, and refuses bad input before it acts."""

import functools
import hashlib
import http.client
import http.server
import os
import stat
import subprocess
import threading

import pytest

from conftest import ANSIBLE_DIR, TOKEN, Site, admin, free_port, get, make_build, sha256

BROKEN_ROUTES = """---
gatewayd_routes:
  - name: web
    backends:
      - { name: blue, service: web-purple, weight: 100 }
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory, build_v1):
    s = Site(tmp_path_factory.mktemp("converge"), build=build_v1)
    yield s
    s.close()


def config_hash(site):
    path = site.root / "gw1" / "etc" / "meshgate" / "gatewayd.toml"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extra_inventory(tmp_path, host, text):
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "hosts.yml").write_text(f"---\nall:\n  hosts:\n    {host}:\n")
    (tmp_path / "host_vars" / f"{host}.yml").write_text(text)
    return tmp_path / "hosts.yml"


def test_converge_serves_then_changes_nothing(site):
    _, _, recap = site.playbook("site.yml", "--limit", "gw1")
    assert recap["gw1"]["changed"] > 0 and recap["gw1"]["failed"] == 0
    ports = site.ports["gw1"]
    ready = admin(ports["admin"], "/readyz")
    assert ready["ready"] and ready["config_ok"], ready
    site.blue.take()
    assert get(ports["proxy"], "/hello") == (200, "blue")
    assert site.blue.take() == 1
    token = site.root / "gw1" / "etc" / "meshgate" / "admin.token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert site.exe("gw1").startswith(str(site.root / "gw1" / "opt" / "meshgate" / "releases"))

    _, out, recap = site.playbook("site.yml", "--limit", "gw1")
    assert recap["gw1"]["changed"] == 0, out[-4000:]
    _, out, recap = site.playbook("site.yml", "--limit", "gw1", "--check", "--diff")
    assert recap["gw1"]["changed"] == 0, out[-4000:]


def test_config_change_is_applied_by_reload(site):
    pid = site.pid("gw1")
    routes = ('{"gatewayd_routes": [{"name": "web", "backends": ['
              '{"name": "blue", "service": "web-blue", "weight": 0},'
              '{"name": "green", "service": "web-green", "weight": 100}]}]}')
    _, out, recap = site.playbook("site.yml", "--limit", "gw1", "-e", routes)
    assert "Reload gatewayd with its init script" in out and recap["gw1"]["changed"] > 0
    assert site.pid("gw1") == pid
    assert get(site.ports["gw1"]["proxy"]) == (200, "green")
    site.playbook("site.yml", "--limit", "gw1")
    assert get(site.ports["gw1"]["proxy"]) == (200, "blue")
    assert site.pid("gw1") == pid


def test_broken_route_fails_at_validation_and_the_gateway_keeps_serving(site, tmp_path):
    pid, before = site.pid("gw1"), config_hash(site)
    token = site.root / "gw1" / "etc" / "meshgate" / "admin.token"
    inventory = extra_inventory(tmp_path, "gw1", BROKEN_ROUTES)
    # A new admin token in the same run: it must not go live either (the running gateway reads
    # its token once, so a token file changed by a failed run would never be handed over).
    code, out, recap = site.playbook("site.yml", "--limit", "gw1", "-e",
                                     "gatewayd_admin_token=another-token-0123456789abcdef",
                                     check=False, extra_inventory=inventory)
    assert code != 0 and recap["gw1"]["failed"] == 1
    assert "TASK [gatewayd : Render gatewayd.toml, validated before it replaces the live file]" in out
    assert "failed to validate" in out and "unknown service 'web-purple'" in out, out[-3000:]
    assert site.pid("gw1") == pid and config_hash(site) == before
    assert token.read_text() == TOKEN + "\n"
    assert get(site.ports["gw1"]["proxy"]) == (200, "blue")


@pytest.mark.parametrize("playbook, host, bad, message", [
    ("site.yml", "gw1", "gatewayd_log_format=xml", "gatewayd_log_format must be one of: json, text"),
    ("site.yml", "gw1", "gatewayd_service_manager=upstart", "gatewayd_service_manager must be one of"),
    ("site.yml", "gw1", '{"gatewayd_workers": "many"}', "gatewayd_workers"),
    ("site.yml", "gw1",
     '{"gatewayd_routes": [{"name": "web", "on_empty_backend": "drop", "backends": []}]}',
     "on_empty_backend must be one of: failover, fail"),
    ("site.yml", "gw1",
     '{"gatewayd_services": [{"name": "s", "tls": {"ca_file": "ca.pem", "verify": false}}]}',
     "verify"),
    ("site.yml", "consul1", "consul_mode=agent", "consul_mode must be one of: server, client"),
    ("site.yml", "consul1", '{"consul_http_port": "http"}', "consul_http_port"),
    ("flip.yml", "gw1", "gateway_traffic_action=drain",
     "gateway_traffic_action must be one of: flip, weights, canary, rollback"),
    ("canary.yml", "gw1", '{"gateway_traffic_canary_interval_seconds": "soon"}',
     "gateway_traffic_canary_interval_seconds"),
])
def test_argument_specs_reject_bad_values_before_any_task(site, playbook, host, bad, message):
    pid, before = site.pid("gw1"), config_hash(site)
    code, out, recap = site.playbook(playbook, "--limit", host, "-e", bad, check=False)
    assert code != 0
    assert "Validation of arguments failed" in out and message in out, out[-3000:]
    # The argument check is the role's first task: nothing ran before it failed.
    assert recap[host]["ok"] == 0 and recap[host]["changed"] == 0, out[-3000:]
    assert "TASK [gatewayd : Create root-owned directories]" not in out
    assert site.pid("gw1") == pid and config_hash(site) == before


def test_wrong_checksum_fails_before_anything_changes(site, tmp_path):
    """On a new host (an empty root): the checksum is checked on the controller before any
    task touches the host, so not even a directory is created."""
    fresh = tmp_path / "fresh-root"
    v2 = make_build(tmp_path / "build-v2", marker=b"\nmeshgate-test-v2\n")
    code, out, _ = site.playbook("site.yml", "--limit", "gw1", "-e", f"gatewayd_root={fresh}",
                                 "-e", f"gatewayd_build_dir={v2}",
                                 "-e", "gatewayd_binary_sha256=" + "0" * 64, check=False)
    assert code != 0 and "is not the expected 0000" in out, out[-3000:]
    assert not fresh.exists(), sorted(str(p) for p in fresh.rglob("*"))


class Releases:
    """The build directory served over HTTP on loopback, as a release server; counts GETs."""

    def __init__(self, directory):
        self.gets = 0
        releases = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                releases.gets += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_release_urls_are_checked_on_the_controller_then_installed(site, tmp_path, build_v1):
    """gatewayd_binary_url / gatewayd_gwctl_url: a wrong sha256 fails before the host changes
    and leaves no download behind; the right one installs the releases (not started: service
    manager none), and a second run downloads nothing and changes nothing."""
    releases, fresh, cache = Releases(build_v1), tmp_path / "fresh-root", tmp_path / "downloads"
    gatewayd_sha, gwctl_sha = sha256(build_v1 / "gatewayd"), sha256(build_v1 / "gwctl")
    common = ["--limit", "gw1", "-e", "gatewayd_build_dir=", "-e", f"gatewayd_root={fresh}",
              "-e", f"gatewayd_download_dir={cache}", "-e", "gatewayd_service_manager=none",
              "-e", f"gatewayd_binary_url={releases.url}/gatewayd",
              "-e", f"gatewayd_gwctl_url={releases.url}/gwctl",
              "-e", f"gatewayd_gwctl_sha256={gwctl_sha}"]
    try:
        code, out, _ = site.playbook("site.yml", *common, "-e", "gatewayd_binary_sha256=" + "1" * 64,
                                     check=False)
        assert code != 0 and "did not match" in out, out[-3000:]
        assert not fresh.exists(), sorted(str(p) for p in fresh.rglob("*"))
        assert not list(cache.glob("gatewayd-*")), list(cache.iterdir())

        _, out, recap = site.playbook("site.yml", *common, "-e", f"gatewayd_binary_sha256={gatewayd_sha}")
        assert recap["gw1"]["changed"] > 0
        for name, digest in (("gatewayd", gatewayd_sha), ("gwctl", gwctl_sha)):
            live = fresh / "usr" / "local" / "bin" / name
            assert os.path.realpath(live).endswith(f"/{name}-{digest[:16]}"), os.path.realpath(live)
            assert sha256(live) == digest
        gets = releases.gets
        assert gets >= 2

        _, out, recap = site.playbook("site.yml", *common, "-e", f"gatewayd_binary_sha256={gatewayd_sha}")
        assert recap["gw1"]["changed"] == 0, out[-3000:]
        assert releases.gets == gets
    finally:
        releases.close()


def test_ansible_dir_has_the_layout_users_expect():
    for path in ("ansible.cfg", ".ansible-lint", "requirements.txt", "README.md", "site.yml",
                 "rolling_update.yml", "flip.yml", "canary.yml", "rollback.yml",
                 "inventories/example/hosts.yml", "inventories/test/hosts.yml"):
        assert (ANSIBLE_DIR / path).exists(), path
    for role in ("consul", "gatewayd", "gateway_traffic"):
        for part in ("defaults/main.yml", "meta/main.yml", "meta/argument_specs.yml",
                     "tasks/main.yml", "handlers/main.yml", "README.md"):
            assert (ANSIBLE_DIR / "roles" / role / part).exists(), f"{role}/{part}"
        assert any((ANSIBLE_DIR / "roles" / role / "templates").iterdir())


def test_a_restart_only_setting_is_handed_over_not_reloaded(site):
    """gateway.cluster (the KV prefix) is read once at start, and a reload does not even list it
    as needing a restart: the role hands the gateway over to a new process instead."""
    pid = site.pid("gw1")
    _, out, _ = site.playbook("site.yml", "--limit", "gw1", "-e", "gatewayd_cluster=fleet-b")
    # A reload would keep the pid.
    assert site.pid("gw1") != pid, out[-3000:]
    assert get(site.ports["gw1"]["proxy"]) == (200, "blue")


def test_listener_tls_and_policies_render_and_a_new_listener_is_handed_over(site, tmp_path):
    """A TLS listener, upstream TLS, the four policy kinds and the keys of every table from
    inventory variables: rendered, validated, and, since a reload cannot bind a listener,
    applied by a hand-over (a new pid that serves the new listener and the old one's socket)."""
    pid, tls_port = site.pid("gw1"), free_port()
    cert, key = tmp_path / "api.pem", tmp_path / "api.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=api.test",
                    "-addext", "subjectAltName=DNS:api.test"], check=True, capture_output=True)
    inventory = extra_inventory(tmp_path, "gw1", f"""---
gatewayd_listeners:
  - name: public
    address: "127.0.0.1:{site.ports['gw1']['proxy']}"
    max_connections: 500
    header_timeout: 5s
    keepalive_timeout: 45s
  - name: secure
    address: "127.0.0.1:{tls_port}"
    tls:
      certificates: [{{cert: "{cert}", key: "{key}"}}]
      min_version: "1.2"
      handshake_timeout: 3s
gatewayd_trusted_proxies: ["10.0.0.0/8"]
gatewayd_max_in_flight: 10000
gatewayd_tracing: {{sample_ratio: 0.5}}
gatewayd_services:
  - name: web-blue
    endpoints: ["{site.blue.address}"]
    max_in_flight_per_endpoint: 100
    outlier: {{consecutive_5xx: 3, base_ejection: 5s}}
  - name: web-secure
    endpoints: ["{site.blue.address}"]
    tls: {{ca_file: "{cert}", server_name: api.test}}
gatewayd_policies:
  - name: one-a-minute
    kind: rate_limit
    rate: 1/m
    key: route
  - name: tokens
    kind: jwt
    jwks_url: http://127.0.0.1:9/jwks.json
    audiences: [api]
    algorithms: [RS256]
    forward_claims: {{sub: X-User, "https://example.com/tenant": X-Tenant}}
  - name: auth
    kind: forward_auth
    service: web-blue
    path: /auth
    cache_ttl: 10s
gatewayd_routes:
  - name: web
    path_prefix: /
    policies: [one-a-minute]
    backends:
      - {{name: blue, service: web-blue, weight: 100}}
  - name: api
    path_prefix: /api/
    latency_objective: 250ms
    retry_on: [503]
    retry_body_max: 32KiB
    body_idle_timeout: 30s
    headers: [{{name: x-tenant}}]
    sticky: {{cookie: session}}
    policies: [tokens, auth]
    backends:
      - {{name: secure, service: web-secure, weight: 100}}
""")
    _, out, recap = site.playbook("site.yml", "--limit", "gw1", extra_inventory=inventory)
    assert "Hand gatewayd over to the new version with its init script" in out, out[-3000:]
    text = (site.root / "gw1" / "etc" / "meshgate" / "gatewayd.toml").read_text()
    assert "[listeners.tls]" in text and '[policies."one-a-minute"]' in text, text
    for line in ("max_connections = 500", 'header_timeout = "5s"', 'keepalive_timeout = "45s"',
                 'handshake_timeout = "3s"', 'trusted_proxies = ["10.0.0.0/8"]',
                 "max_in_flight = 10000", "[tracing]", "max_in_flight_per_endpoint = 100",
                 f'tls = {{ ca_file = "{cert}", server_name = "api.test" }}',
                 '"https://example.com/tenant" = "X-Tenant"', 'kind = "forward_auth"',
                 "retry_on = [503]", 'sticky = { cookie = "session" }'):
        assert line in text, text
    assert site.pid("gw1") != pid
    https = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(cert), "--resolve",
                            f"api.test:{tls_port}:127.0.0.1", f"https://api.test:{tls_port}/"],
                           capture_output=True, text=True)
    assert https.stdout == "blue", https.stdout + https.stderr
    # The policy holds across listeners: one request a minute for the route.
    assert get(site.ports["gw1"]["proxy"])[0] == 429
    # The JWT policy is live on its route: a request without a token never reaches an upstream.
    conn = http.client.HTTPConnection("127.0.0.1", site.ports["gw1"]["proxy"], timeout=5)
    try:
        conn.request("GET", "/api/x", headers={"x-tenant": "a"})
        assert conn.getresponse().status == 401
    finally:
        conn.close()
    _, out, recap = site.playbook("site.yml", "--limit", "gw1", extra_inventory=inventory)
    assert recap["gw1"]["changed"] == 0, out[-3000:]
