"""The gatewayd role converged for real into a throw-away root (connection local, init script):
it serves, converges again with no change, checks clean, and refuses bad input before it acts."""

import hashlib
import stat
import subprocess

import pytest

from conftest import ANSIBLE_DIR, Site, admin, free_port, get, make_build

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
    inventory = extra_inventory(tmp_path, "gw1", BROKEN_ROUTES)
    code, out, recap = site.playbook("site.yml", "--limit", "gw1", check=False,
                                     extra_inventory=inventory)
    assert code != 0 and recap["gw1"]["failed"] == 1
    assert "TASK [gatewayd : Render gatewayd.toml, validated before it replaces the live file]" in out
    assert "failed to validate" in out and "unknown service 'web-purple'" in out, out[-3000:]
    assert site.pid("gw1") == pid and config_hash(site) == before
    assert get(site.ports["gw1"]["proxy"]) == (200, "blue")


@pytest.mark.parametrize("bad, message", [
    ("gatewayd_log_format=xml", "gatewayd_log_format must be one of: json, text"),
    ("gatewayd_service_manager=upstart", "gatewayd_service_manager must be one of"),
    ('{"gatewayd_workers": "many"}', "gatewayd_workers"),
    ('{"gatewayd_routes": [{"name": "web", "on_empty_backend": "drop", "backends": []}]}',
     "on_empty_backend must be one of: failover, fail"),
])
def test_argument_specs_reject_bad_values_before_any_task(site, bad, message):
    pid, before = site.pid("gw1"), config_hash(site)
    code, out, recap = site.playbook("site.yml", "--limit", "gw1", "-e", bad, check=False)
    assert code != 0
    assert "Validation of arguments failed" in out and message in out, out[-3000:]
    # The argument check is the role's first task: nothing ran before it failed.
    assert recap["gw1"]["ok"] == 0 and recap["gw1"]["changed"] == 0
    assert "TASK [gatewayd : Create root-owned directories]" not in out
    assert site.pid("gw1") == pid and config_hash(site) == before


def test_wrong_checksum_fails_before_anything_changes(site, tmp_path):
    pid = site.pid("gw1")
    releases = site.root / "gw1" / "opt" / "meshgate" / "releases"
    staged = sorted(p.name for p in releases.iterdir())
    v2 = make_build(tmp_path / "build-v2", marker=b"\nmeshgate-test-v2\n")
    code, out, _ = site.playbook("site.yml", "--limit", "gw1", "-e", f"gatewayd_build_dir={v2}",
                                 "-e", "gatewayd_binary_sha256=" + "0" * 64, check=False)
    assert code != 0 and "is not the expected 0000" in out, out[-3000:]
    assert sorted(p.name for p in releases.iterdir()) == staged
    assert site.pid("gw1") == pid


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


def test_listener_tls_and_policies_render_and_a_new_listener_is_handed_over(site, tmp_path):
    """A TLS listener and a rate-limit policy from inventory variables: rendered, validated,
    and, since a reload cannot bind a listener, applied by a hand-over (a new pid that serves
    the new listener and the old one's socket)."""
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
gatewayd_policies:
  - name: one-a-minute
    kind: rate_limit
    rate: 1/m
    key: route
gatewayd_routes:
  - name: web
    path_prefix: /
    policies: [one-a-minute]
    backends:
      - {{name: blue, service: web-blue, weight: 100}}
""")
    _, out, recap = site.playbook("site.yml", "--limit", "gw1", extra_inventory=inventory)
    assert "Hand gatewayd over to the new version with its init script" in out, out[-3000:]
    text = (site.root / "gw1" / "etc" / "meshgate" / "gatewayd.toml").read_text()
    assert "[listeners.tls]" in text and '[policies."one-a-minute"]' in text, text
    for line in ("max_connections = 500", 'header_timeout = "5s"', 'keepalive_timeout = "45s"',
                 'handshake_timeout = "3s"'):
        assert line in text, text
    assert site.pid("gw1") != pid
    https = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(cert), "--resolve",
                            f"api.test:{tls_port}:127.0.0.1", f"https://api.test:{tls_port}/"],
                           capture_output=True, text=True)
    assert https.stdout == "blue", https.stdout + https.stderr
    # The policy holds across listeners: one request a minute for the route.
    assert get(site.ports["gw1"]["proxy"])[0] == 429
    _, out, recap = site.playbook("site.yml", "--limit", "gw1", extra_inventory=inventory)
    assert recap["gw1"]["changed"] == 0, out[-3000:]
