"""Checks that need no running gateway: lint, syntax, argument specs, naming, the systemd unit."""

import re
import subprocess

import pytest
import yaml

from conftest import ANSIBLE_DIR, VENV_BIN, Site

ROLES = ("gatewayd", "gateway_traffic", "consul")
PLAYBOOKS = ("site.yml", "rolling_update.yml", "flip.yml", "canary.yml", "rollback.yml")
# systemd-analyze security's exposure score of the gatewayd unit (0 = locked down, 10 = wide
# open) must stay at or below this (systemd-analyze takes it times ten); ansible/README.md
# documents the number and what is left exposed.
SECURITY_THRESHOLD = 1.5


def load(path):
    return yaml.safe_load(path.read_text()) or {}


def test_ansible_lint_production_profile_offline_no_skips(tmp_path):
    config = load(ANSIBLE_DIR / ".ansible-lint")
    assert config["profile"] == "production" and config["skip_list"] == []
    proc = subprocess.run([str(VENV_BIN / "ansible-lint"), "--offline", "--nocolor"],
                          cwd=ANSIBLE_DIR, capture_output=True, text=True, timeout=600,
                          env={"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr


@pytest.mark.parametrize("playbook", PLAYBOOKS)
@pytest.mark.parametrize("inventory", ["inventories/example", "inventories/test"])
def test_syntax_check(playbook, inventory):
    proc = subprocess.run([str(VENV_BIN / "ansible-playbook"), "--syntax-check", "-i", inventory,
                           playbook], cwd=ANSIBLE_DIR, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_defaults_and_readme_in_lockstep(role):
    path = ANSIBLE_DIR / "roles" / role
    defaults = load(path / "defaults" / "main.yml")
    options = load(path / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options), "defaults/main.yml and argument_specs differ"
    for name, spec in options.items():
        assert spec.get("default") == defaults[name], f"{name}: default differs"
        assert spec.get("description"), f"{name}: no description"
        if spec["type"] in ("list", "dict") or "choices" in spec:
            continue
        assert defaults[name] is None or isinstance(defaults[name], {
            "str": str, "path": str, "int": int, "bool": bool, "float": float}[spec["type"]]), name
    readme = (path / "README.md").read_text()
    table = set(re.findall(r"^\| `([a-z0-9_]+)` \|", readme, re.M))
    assert table == set(defaults), f"README table differs: {table ^ set(defaults)}"


def names_in(role):
    """Every variable name a role defines: defaults, vars, register, set_fact, vars:, loop_var."""
    path = ANSIBLE_DIR / "roles" / role
    names = set(load(path / "defaults" / "main.yml")) | set(load(path / "vars" / "main.yml"))

    def walk(node):
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if "register" in node:
                names.add(node["register"])
            for key in ("ansible.builtin.set_fact", "set_fact"):
                if isinstance(node.get(key), dict):
                    names.update(k for k in node[key] if k != "cacheable")
            if isinstance(node.get("vars"), dict):
                names.update(node["vars"])
            if isinstance(node.get("loop_control"), dict) and "loop_var" in node["loop_control"]:
                names.add(node["loop_control"]["loop_var"])
            for value in node.values():
                walk(value)

    for file in list((path / "tasks").glob("*.yml")) + list((path / "handlers").glob("*.yml")):
        walk(load(file))
    return names


@pytest.mark.parametrize("role", ROLES)
def test_every_variable_is_prefixed_with_its_role(role):
    names = names_in(role)
    assert len(names) > 10
    bad = sorted(n for n in names if not n.startswith(role + "_"))
    assert bad == [], f"not prefixed with {role}_: {bad}"


@pytest.mark.parametrize("role", ROLES)
def test_only_builtin_modules(role):
    for file in (ANSIBLE_DIR / "roles" / role).glob("*/*.yml"):
        for module in re.findall(r"^\s*-?\s*([a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+):", file.read_text(), re.M):
            assert module.startswith("ansible.builtin."), f"{file}: {module}"


def test_systemd_unit_verifies_and_passes_the_security_threshold(tmp_path, build_v1):
    """Renders the real unit through the role (service manager none: nothing starts) and checks
    it offline with systemd-analyze."""
    site = Site(tmp_path, build=build_v1)
    try:
        site.playbook("../tests/ansible/playbooks/render_unit.yml", "--limit", "gw1")
    finally:
        site.close()
    unit = site.root / "gw1" / "etc" / "systemd" / "system" / "gatewayd.service"
    text = unit.read_text()
    for line in ("NoNewPrivileges=true", "ProtectSystem=strict", "ProtectHome=true",
                 "PrivateTmp=true", "PrivateDevices=true", "ProtectKernelTunables=true",
                 "ProtectKernelModules=true", "ProtectKernelLogs=true",
                 "ProtectControlGroups=true", "ProtectClock=true", "ProtectHostname=true",
                 "RestrictNamespaces=true", "LockPersonality=true",
                 "MemoryDenyWriteExecute=true", "SystemCallFilter=@system-service",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
                 "AmbientCapabilities=CAP_NET_BIND_SERVICE", "ExecReload=/bin/kill -HUP $MAINPID",
                 "TimeoutStopSec=20"):
        assert line in text, line
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                               f"--threshold={round(SECURITY_THRESHOLD * 10)}", str(unit)],
                              capture_output=True, text=True)
    overall = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert overall, security.stdout + security.stderr
    assert security.returncode == 0 and float(overall.group(1)) <= SECURITY_THRESHOLD, \
        security.stdout[-3000:]
