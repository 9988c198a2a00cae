"""Harness for the Ansible suite: runs the real playbooks of ansible/ against gateways installed
under throw-away roots on this machine (connection local, loopback, ephemeral ports).

Every process the playbooks start is found through its pid file under the test root and killed
by pid when the module ends; upstreams and load generators are threads of this process.
"""

import http.client
import http.server
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
VENV_BIN = REPO / ".venv" / "bin"
TOKEN = "test-admin-token-0123456789abcdef"
HOSTS = ("gw1", "gw2", "gw3")


def target_dir():
    """The cargo target directory holding the freshly built binaries."""
    base = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    path = pathlib.Path(base)
    if not path.is_absolute():
        path = REPO / path
    return path / "debug"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_build(dest, marker=b""):
    """A build directory as the gatewayd role expects it (with devconsul, which the consul role
    installs as `consul`). A marker appended to gatewayd makes a "new version" with another
    sha256 that runs the same (ELF ignores trailing bytes)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("gatewayd", "gwctl", "devconsul"):
        src = target_dir() / name
        if not src.exists():
            pytest.fail(f"{src} is missing: build the workspace binaries first")
        # Debug builds carry ~200 MB of symbols; the role copies each binary into every host's
        # root, so the suite installs stripped copies (same code, a tenth of the size).
        if shutil.which("strip"):
            subprocess.run(["strip", "-o", str(dest / name), str(src)], check=True)
        else:
            shutil.copy2(src, dest / name)
    if marker:
        with open(dest / "gatewayd", "ab") as f:
            f.write(marker)
    return dest


def sha256(path):
    return subprocess.run(["sha256sum", str(path)], check=True, capture_output=True,
                          text=True).stdout.split()[0]


class Upstream:
    """An HTTP/1.1 origin on loopback that answers its name and counts what it served."""

    def __init__(self, name):
        self.name = name
        self.hits = 0
        self.status = 200
        self.lock = threading.Lock()
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server's naming)
                with upstream.lock:
                    upstream.hits += 1
                    status = upstream.status
                body = upstream.name.encode()
                self.send_response(status)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self):
        with self.lock:
            n, self.hits = self.hits, 0
        return n

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def get(port, path="/", timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def admin(port, path, token=TOKEN):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


class Site:
    """One test environment: a root directory with a sub-root per host, its ports and upstreams,
    and the environment the test inventory (ansible/inventories/test) reads."""

    def __init__(self, tmp, consul=False, build=None):
        self.root = tmp / "root"
        self.root.mkdir()
        self.build = build or make_build(tmp / "build-v1")
        self.blue = Upstream("blue")
        self.green = Upstream("green")
        self.ports = {h: {"proxy": free_port(), "admin": free_port()} for h in HOSTS}
        self.consul_port = free_port() if consul else None
        self.env = dict(os.environ)
        self.env.update({
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
            "ANSIBLE_REMOTE_TEMP": str(tmp / "ansible-remote"),
            "ANSIBLE_HOME": str(tmp / "ansible-home"),
            "ANSIBLE_NOCOLOR": "1",
            "MESHGATE_TEST_ROOT": str(self.root),
            "MESHGATE_TEST_BUILD_DIR": str(self.build),
            "MESHGATE_TEST_BLUE": self.blue.address,
            "MESHGATE_TEST_GREEN": self.green.address,
            "MESHGATE_TEST_CONSUL": f"http://127.0.0.1:{self.consul_port}" if consul else "",
            "MESHGATE_TEST_CONSUL_PORT": str(self.consul_port or ""),
        })
        for h, p in self.ports.items():
            self.env[f"MESHGATE_TEST_{h.upper()}_PROXY_PORT"] = str(p["proxy"])
            self.env[f"MESHGATE_TEST_{h.upper()}_ADMIN_PORT"] = str(p["admin"])
        self.seen_pids = set()

    def playbook(self, playbook, *args, check=True, extra_inventory=None):
        """Runs ansible-playbook from ansible/; returns (returncode, output, recap by host)."""
        cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "inventories/test"]
        if extra_inventory:
            cmd += ["-i", str(extra_inventory)]
        cmd += [playbook, *args]
        proc = subprocess.run(cmd, cwd=ANSIBLE_DIR, env=self.env, capture_output=True, text=True,
                              timeout=600)
        out = proc.stdout + proc.stderr
        self.remember_pids()
        if check and proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-6000:]}")
        return proc.returncode, out, recap(out)

    def pid(self, host):
        path = self.root / host / "run" / "meshgate" / "gatewayd.pid"
        return int(path.read_text()) if path.exists() else None

    def remember_pids(self):
        for pidfile in self.root.glob("*/run/*/*.pid"):
            try:
                self.seen_pids.add(int(pidfile.read_text()))
            except ValueError:
                pass

    def exe(self, host):
        """The binary the running gatewayd of host was started from."""
        return os.readlink(f"/proc/{self.pid(host)}/exe")

    def close(self):
        self.remember_pids()
        for pid in self.seen_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.blue.close()
        self.green.close()


def recap(output):
    """PLAY RECAP lines → {host: {"ok": n, "changed": n, "failed": n, ...}}."""
    result = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[1] == ":" and "=" in parts[2]:
            result[parts[0]] = {k: int(v) for k, v in (p.split("=") for p in parts[2:])}
    return result


def wait_until(what, check, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def build_v1(tmp_path_factory):
    return make_build(tmp_path_factory.mktemp("build-v1"))


class Load:
    """Steady, bounded load like a load balancer that follows Consul: every 100 ms it re-reads
    the passing `meshgate` instances (admin port → proxy port) and spreads requests over them,
    one connection per request. Counts every outcome; stops by itself after `limit` seconds."""

    def __init__(self, site, rate=80, workers=4, limit=300, ports=None):
        self.site, self.rate, self.limit = site, rate, limit
        self.by_admin = {p["admin"]: p["proxy"] for p in site.ports.values()}
        self.targets = list(ports) if ports else []
        self.follow_consul = ports is None
        self.ok = 0
        self.failures = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self.work, args=(i, workers), daemon=True)
                        for i in range(workers)]
        if self.follow_consul:
            self.refresh()
            self.threads.append(threading.Thread(target=self.follow, daemon=True))

    def refresh(self):
        url = f"http://127.0.0.1:{self.site.consul_port}/v1/health/service/meshgate?passing=1"
        with urllib.request.urlopen(url, timeout=2) as resp:
            entries = json.loads(resp.read())
        ports = sorted({self.by_admin[e["Service"]["Port"]] for e in entries
                        if e["Service"]["Port"] in self.by_admin})
        with self.lock:
            self.targets = ports

    def follow(self):
        while not self.stop_event.wait(0.1):
            try:
                self.refresh()
            except OSError:
                pass

    def work(self, index, workers):
        interval = workers / self.rate
        started = time.monotonic()
        n = index
        while not self.stop_event.is_set() and time.monotonic() - started < self.limit:
            with self.lock:
                targets = list(self.targets)
            if not targets:
                self.record(None, "no gateway in rotation")
            else:
                port = targets[n % len(targets)]
                try:
                    status, _ = get(port, timeout=5)
                    self.record(port, None if status == 200 else f"status {status}")
                except OSError as e:
                    self.record(port, repr(e))
            n += 1
            time.sleep(interval)

    def record(self, port, failure):
        with self.lock:
            if failure is None:
                self.ok += 1
            else:
                self.failures.append((time.monotonic(), port, failure))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for t in self.threads:
            t.join(10)
