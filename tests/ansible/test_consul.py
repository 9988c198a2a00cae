"""The consul role with devconsul standing in for the consul binary: binary-path install, the
agent started by the init script, rendering for server and client mode (the files parse and
carry the values), and a config `consul validate` rejects never reaching the live directory."""

import json
import urllib.request

import pytest

from conftest import Site

CONSUL = ["--limit", "consul"]


@pytest.fixture(scope="module")
def site(tmp_path_factory, build_v1):
    s = Site(tmp_path_factory.mktemp("consul"), consul=True, build=build_v1)
    yield s
    s.close()


def live_config(root):
    return json.loads((root / "consul1" / "etc" / "consul.d" / "consul.json").read_text())


def agent_pid(site):
    return int((site.root / "consul1" / "run" / "consul" / "consul.pid").read_text())


def test_binary_install_starts_the_agent_and_converges_again_with_no_change(site):
    site.playbook("site.yml", *CONSUL)
    url = f"http://127.0.0.1:{site.consul_port}/v1/status/leader"
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
    config = live_config(site.root)
    assert config["server"] is True and config["bootstrap_expect"] == 1
    assert config["ports"]["http"] == site.consul_port and config["datacenter"] == "dc1"
    _, out, recap = site.playbook("site.yml", *CONSUL)
    assert recap["consul1"]["changed"] == 0, out[-3000:]
    _, out, recap = site.playbook("site.yml", *CONSUL, "--check", "--diff")
    assert recap["consul1"]["changed"] == 0, out[-3000:]


def test_a_config_that_validate_rejects_never_goes_live(site):
    pid, before = agent_pid(site), live_config(site.root)
    tls = site.root / "consul1" / "etc" / "consul.d" / "tls"
    # TLS files given in the same run must not go live either.
    variables = {"consul_datacenter": "DC-1", "consul_tls_enabled": True,
                 "consul_tls_ca_pem": "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n",
                 "consul_tls_cert_pem": "-----BEGIN CERTIFICATE-----\nc\n-----END CERTIFICATE-----\n",
                 "consul_tls_key_pem": "-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n"}
    code, out, _ = site.playbook("site.yml", *CONSUL, "-e", json.dumps(variables), check=False)
    assert code != 0
    assert "TASK [consul : Validate the staged config with consul validate]" in out
    assert "only lower-case alphanumerics" in out, out[-3000:]
    assert live_config(site.root) == before and agent_pid(site) == pid
    assert list(tls.iterdir()) == []


@pytest.mark.parametrize("mode", ["server", "client"])
def test_rendering_for_server_and_client(site, tmp_path, mode):
    variables = {
        "consul_root": str(tmp_path), "consul_service_manager": "none", "consul_mode": mode,
        "consul_datacenter": "eu-west", "consul_retry_join": ["10.0.0.1", "10.0.0.2"],
        "consul_bind_addr": "10.0.0.9", "consul_bootstrap_expect": 3,
        "consul_encrypt_key": "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=",
        "consul_acl_enabled": True, "consul_acl_initial_management_token": "mgmt-secret",
        "consul_acl_agent_token": "agent-secret", "consul_tls_enabled": True,
        "consul_tls_ca_pem": "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n",
        "consul_tls_cert_pem": "-----BEGIN CERTIFICATE-----\nc\n-----END CERTIFICATE-----\n",
        "consul_tls_key_pem": "-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n",
    }
    _, out, _ = site.playbook("site.yml", *CONSUL, "-e", json.dumps(variables))
    assert "mgmt-secret" not in out and "PRIVATE KEY" not in out
    config = json.loads((tmp_path / "etc" / "consul.d" / "consul.json").read_text())
    assert config["datacenter"] == "eu-west" and config["retry_join"] == ["10.0.0.1", "10.0.0.2"]
    assert config["bind_addr"] == "10.0.0.9" and config["encrypt"].endswith("=")
    assert config["server"] is (mode == "server")
    assert config["acl"]["enabled"] and config["acl"]["default_policy"] == "deny"
    assert config["acl"]["tokens"]["agent"] == "agent-secret"
    if mode == "server":
        assert config["bootstrap_expect"] == 3
        assert config["acl"]["tokens"]["initial_management"] == "mgmt-secret"
    else:
        assert "bootstrap_expect" not in config
        assert "initial_management" not in config["acl"]["tokens"]
    tls = config["tls"]["defaults"]
    assert tls["ca_file"] == str(tmp_path / "etc" / "consul.d" / "tls" / "ca.pem")
    assert (tmp_path / "etc" / "consul.d" / "tls" / "agent-key.pem").stat().st_mode & 0o777 == 0o640
    staged = tmp_path / "etc" / "consul.d.staging" / "consul.json"
    assert json.loads(staged.read_text()) == config
