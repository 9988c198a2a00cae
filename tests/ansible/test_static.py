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
        assert "choices" not in spec or defaults[name] in spec["choices"], f"{name}: default not a choice"
        if spec["type"] in ("list", "dict") or "choices" in spec:
            continue
        assert defaults[name] is None or isinstance(defaults[name], {
            "str": str, "path": str, "int": int, "bool": bool, "float": float}[spec["type"]]), name
    readme = (path / "README.md").read_text()
    table = set(re.findall(r"^\| `([a-z0-9_]+)` \|", readme, re.M))
    assert table == set(defaults), f"README table differs: {table ^ set(defaults)}"


def test_rolling_update_is_shaped_as_the_issue_asks():
    """Batches of 1, 25 % and the rest, no failure tolerated, each gateway upgraded inside a
    block whose always: puts it back in rotation, and a last play checking every gateway."""
    plays = load(ANSIBLE_DIR / "rolling_update.yml")
    roll, final = plays[0], plays[-1]
    assert roll["serial"] == [1, "25%", "100%"] and roll["max_fail_percentage"] == 0
    (block,) = roll["tasks"]
    steps = [t["ansible.builtin.include_role"].get("tasks_from", "main") for t in block["block"]
             if "ansible.builtin.include_role" in t]
    assert steps == ["rotation_out", "main", "wait_ready"], steps
    assert [t["ansible.builtin.include_role"]["tasks_from"] for t in block["always"]] == ["rotation_in"]
    assert final["hosts"] == roll["hosts"] and "serial" not in final
    assert [t["ansible.builtin.include_role"]["tasks_from"] for t in final["tasks"]] == ["assert_in_service"]


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


def test_playbooks_use_only_builtin_modules_and_lookups():
    files = [ANSIBLE_DIR / p for p in PLAYBOOKS] + list((ANSIBLE_DIR / "roles").rglob("*.yml")) \
        + list((ANSIBLE_DIR / "roles").rglob("*.j2")) + list((ANSIBLE_DIR / "inventories").rglob("*.yml"))
    for file in files:
        for name in re.findall(r"\b([a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+)\b", file.read_text()):
            if name.split(".")[0] in ("ansible", "community", "hashicorp", "containers", "kubernetes"):
                assert name.startswith("ansible.builtin."), f"{file}: {name}"


def test_systemd_unit_verifies_and_passes_the_security_threshold(tmp_path, build_v1):
    """Renders the real units through the roles (service manager none: nothing starts) and
    checks them offline with systemd-analyze: the gatewayd unit against the threshold, the
    consul unit for validity."""
    site = Site(tmp_path, build=build_v1)
    try:
        site.playbook("../tests/ansible/playbooks/render_unit.yml", "--limit", "gw1,consul1")
    finally:
        site.close()
    consul_unit = site.root / "consul1" / "etc" / "systemd" / "system" / "consul.service"
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", str(consul_unit)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    unit = site.root / "gw1" / "etc" / "systemd" / "system" / "gatewayd.service"
    text = unit.read_text()
    for line in ("NoNewPrivileges=true", "ProtectSystem=strict", "ReadWritePaths=",
                 "ProtectHome=true",
                 "PrivateTmp=true", "PrivateDevices=true", "ProtectKernelTunables=true",
                 "ProtectKernelModules=true", "ProtectKernelLogs=true",
                 "ProtectControlGroups=true", "ProtectClock=true", "ProtectHostname=true",
                 "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                 "RestrictNamespaces=true", "LockPersonality=true", "LimitNOFILE=",
                 "MemoryDenyWriteExecute=true", "SystemCallFilter=@system-service",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
                 "AmbientCapabilities=CAP_NET_BIND_SERVICE", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert line in text, line
    # systemd must never kill a draining gateway: TimeoutStopSec is above the drain timeout
    # (5s in the test inventory).
    assert int(re.search(r"^TimeoutStopSec=(\d+)$", text, re.M).group(1)) > 5
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


# docs/configuration.md's key tables → where the gatewayd role takes each key. A table maps to
# either a list-of-tables variable of argument_specs (its `options`, by path) or to top-level
# role variables. Keys the role writes itself or does not offer are listed with the reason, so
# that a key gatewayd gains is either offered by the role or refused here on purpose.
CONFIG_TABLES = {
    "[gateway]": {
        "variables": {"workers": "gatewayd_workers", "drain_timeout": "gatewayd_drain_timeout",
                      "cluster": "gatewayd_cluster", "request_id": "gatewayd_request_id",
                      "forwarded_headers": "gatewayd_forwarded_headers",
                      "latency_histograms": "gatewayd_latency_histograms",
                      "trusted_proxies": "gatewayd_trusted_proxies",
                      "max_in_flight": "gatewayd_max_in_flight"},
        # state_file: gatewayd_persist_weights; handover_socket: always (rolling updates).
        "role": {"state_file", "handover_socket"},
    },
    "[[listeners]]": {"spec": ["gatewayd_listeners"]},
    "[listeners.tls]": {"spec": ["gatewayd_listeners", "tls"]},
    "[admin]": {
        "variables": {"address": "gatewayd_admin_address",
                      "public_metrics": "gatewayd_admin_public_metrics"},
        "role": {"token_file"},  # gatewayd_admin_token, written mode 0600
    },
    "[log]": {
        "variables": {"level": "gatewayd_log_level", "format": "gatewayd_log_format",
                      "access_log_sample": "gatewayd_access_log_sample"},
        # The supervisor owns the output (journald, or the init script's log file), and
        # access_log is a shorthand of access_log_sample.
        "not_offered": {"directory", "file_prefix", "rotation", "access_log"},
    },
    "[tracing]": {"spec": ["gatewayd_tracing"]},
    # name: the table's name; outlier: the [services.NAME.outlier] table, checked below.
    "[services.NAME]": {"spec": ["gatewayd_services"], "role": {"name", "outlier"}},
    "[services.NAME.tls]": {"spec": ["gatewayd_services", "tls"]},
    "[services.NAME.outlier]": {"spec": ["gatewayd_services", "outlier"]},
    "[consul]": {
        "variables": {"address": "gatewayd_consul_address",
                      "datacenter": "gatewayd_consul_datacenter",
                      "consistency": "gatewayd_consul_consistency",
                      "wait": "gatewayd_consul_wait", "backoff_max": "gatewayd_consul_backoff_max",
                      "watch_mode": "gatewayd_consul_watch_mode",
                      "kv_weights": "gatewayd_consul_kv_weights",
                      "register": "gatewayd_consul_register",
                      "register_ttl": "gatewayd_consul_register_ttl"},
        # ca_file/token_file: gatewayd_consul_ca_pem/_token, written by the role; cache_file:
        # in the state directory.
        "role": {"ca_file", "token_file", "cache_file"},
        # The default id holds the pid, so the two processes of a hand-over never share one
        # registration; the rolling update finds a gateway's registrations by its admin port.
        "not_offered": {"register_id"},
    },
    "[[routes]]": {"spec": ["gatewayd_routes"]},
    "[[routes.backends]]": {"spec": ["gatewayd_routes", "backends"]},
    "[[routes.cohorts]]": {"spec": ["gatewayd_routes", "cohorts"]},
    # Every kind's keys, plus `kind` itself (documented in prose, not in a table).
    "[policies.NAME]": {"spec": ["gatewayd_policies"], "role": {"name", "kind"}},
}


def documented_config_keys():
    """{table heading: set of keys} from the key tables of docs/configuration.md; the policy
    kinds' tables all count for `[policies.NAME]`."""
    lines = (ANSIBLE_DIR.parent / "docs" / "configuration.md").read_text().splitlines()
    tables, heading, key_table = {}, None, False
    for i, line in enumerate(lines):
        found = re.match(r"^#{2,3} `(\[.*\])`\s*$", line)
        if line.startswith("#"):
            heading, key_table = found.group(1) if found else None, False
        elif line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|\s*-", lines[i + 1]):
            # A table's header row: only "| key | meaning | ..." tables list keys. (A row after
            # a paragraph inside such a table still counts: the routes table has one.)
            key_table = line.startswith("| key |")
        elif heading and key_table and line.startswith("| `"):
            first_cell = line.split("|")[1]
            tables.setdefault(heading, set()).update(re.findall(r"`([a-z0-9_]+)`", first_cell))
    return tables


def test_gatewayd_role_offers_every_documented_config_key():
    options = load(ANSIBLE_DIR / "roles" / "gatewayd" / "meta" / "argument_specs.yml")[
        "argument_specs"]["main"]["options"]
    documented = documented_config_keys()
    assert set(documented) == set(CONFIG_TABLES), set(documented) ^ set(CONFIG_TABLES)
    for heading, how in CONFIG_TABLES.items():
        handled = set(how.get("role", ())) | set(how.get("not_offered", ()))
        if "spec" in how:
            spec = {"options": options}
            for name in how["spec"]:
                spec = spec["options"][name]
            offered = set(spec["options"])
        else:
            assert set(how["variables"].values()) <= set(options), heading
            offered = set(how["variables"])
        missing = documented[heading] - offered - handled
        unknown = offered - documented[heading] - handled
        assert not missing, f"{heading}: gatewayd takes {sorted(missing)}, the role does not"
        assert not unknown, f"{heading}: the role offers {sorted(unknown)}, gatewayd has no such key"
