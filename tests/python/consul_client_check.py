#!/usr/bin/env python3
"""Drives devconsul with py-consul, a real Consul client, used exactly as against real Consul.

Usage: consul_client_check.py HOST:PORT

Covers KV (put/get/recurse/delete, flags, cas), a blocking KV read woken by a write from another
thread, agent service registration with a TTL check, ttl_pass, health.service(passing=True) and
catalog.services. Prints one line per step; exits 1 with a clear message on the first mismatch
(2 on bad usage). Run by tests/src/cases/consul_clients.rs with the venv tests/run.sh installs.
"""

import sys
import threading
import time

import consul

# Bound on the blocking read: the writer thread wakes it well before; the server's own timeout
# (wait + wait/16) is the backstop, so this script can never hang.
BLOCK_WAIT = "10s"


class Mismatch(Exception):
    """devconsul answered differently from real Consul."""


def expect(what, got, want):
    if got != want:
        raise Mismatch(f"{what}: got {got!r}, want {want!r}")
    print(f"ok: {what}")


def check_kv(c):
    prefix = "py-consul-check"
    key = f"{prefix}/greeting"
    expect("kv.put", c.kv.put(key, "hello", flags=42), True)
    index, entry = c.kv.get(key)
    if entry is None:
        raise Mismatch(f"kv.get {key}: key missing right after put")
    expect("kv.get value", entry["Value"], b"hello")
    expect("kv.get flags", entry["Flags"], 42)
    expect("kv.get key", entry["Key"], key)
    if not (isinstance(index, str) and int(index) >= 1):
        raise Mismatch(f"kv.get index: got {index!r}, want a positive X-Consul-Index")
    print("ok: kv.get index")

    # An empty value reads back as None (Consul sends `"Value": null`).
    expect("kv.put empty", c.kv.put(f"{prefix}/empty", ""), True)
    expect("kv.get empty value", c.kv.get(f"{prefix}/empty")[1]["Value"], None)

    # cas=0 creates only once; cas=<ModifyIndex> updates only at that index.
    created = f"{prefix}/created-once"
    expect("kv.put cas=0 (absent)", c.kv.put(created, "first", cas=0), True)
    expect("kv.put cas=0 (present)", c.kv.put(created, "second", cas=0), False)
    _, entry = c.kv.get(created)
    expect("cas=0 kept the first value", entry["Value"], b"first")
    modify = entry["ModifyIndex"]
    expect("kv.put stale cas", c.kv.put(created, "x", cas=modify + 1000), False)
    expect("kv.put cas=ModifyIndex", c.kv.put(created, "third", cas=modify), True)
    expect("cas update applied", c.kv.get(created)[1]["Value"], b"third")

    _, entries = c.kv.get(prefix, recurse=True)
    keys = sorted(e["Key"] for e in entries or [])
    expect("kv.get recurse keys", keys, sorted([key, f"{prefix}/empty", created]))
    _, listed = c.kv.get(f"{prefix}/", keys=True)
    expect("kv.get keys", sorted(listed or []), keys)

    expect("kv.delete", c.kv.delete(key), True)
    expect("kv.get after delete", c.kv.get(key)[1], None)
    expect("kv.delete missing key", c.kv.delete(key), True)
    expect("kv.delete recurse", c.kv.delete(prefix, recurse=True), True)
    expect("kv.get recurse after delete", c.kv.get(prefix, recurse=True)[1], None)


def check_blocking_kv(c):
    key = "py-consul-check/blocking"
    c.kv.put(key, "before")
    index, _ = c.kv.get(key)
    done = threading.Event()
    errors = []

    def writer():
        # Write only once the reader is parked on the index (or after a short while anyway: a
        # write before the read starts still makes the read return at once, with a higher index).
        done.wait(0.3)
        try:
            writer_client = consul.Consul(host=c.http.host, port=c.http.port)
            writer_client.kv.put(key, "after")
        except Exception as e:  # reported by the main thread
            errors.append(e)

    t = threading.Thread(target=writer, daemon=True)
    started = time.monotonic()
    t.start()
    new_index, entry = c.kv.get(key, index=index, wait=BLOCK_WAIT)
    elapsed = time.monotonic() - started
    done.set()
    t.join(5)
    if errors:
        raise Mismatch(f"writer thread failed: {errors[0]!r}")
    if elapsed >= 9.5:
        raise Mismatch(f"blocking kv.get ran into its {BLOCK_WAIT} wait instead of waking on the write")
    if int(new_index) <= int(index):
        raise Mismatch(f"blocking kv.get index: got {new_index}, want > {index}")
    expect("blocking kv.get returns the write", entry["Value"], b"after")
    c.kv.delete(key)


def check_agent_and_health(c):
    name, sid = "py-consul-svc", "py-consul-svc-1"
    ok = c.agent.service.register(
        name,
        service_id=sid,
        address="127.0.0.1",
        port=18080,
        tags=["py", "v1"],
        check=consul.Check.ttl("30s"),
    )
    expect("agent.service.register", ok, True)
    services = c.agent.services()
    if sid not in services:
        raise Mismatch(f"agent.services: {sid} missing in {sorted(services)}")
    expect("agent.services port", services[sid]["Port"], 18080)
    check_id = f"service:{sid}"
    checks = c.agent.checks()
    if check_id not in checks:
        raise Mismatch(f"agent.checks: {check_id} missing in {sorted(checks)}")
    # A TTL check starts critical: not passing yet.
    expect("TTL check starts critical", checks[check_id]["Status"], "critical")
    _, nodes = c.health.service(name, passing=True)
    expect("health.service passing before ttl_pass", nodes, [])

    expect("agent.check.ttl_pass", c.agent.check.ttl_pass(check_id, "all good"), True)
    _, nodes = c.health.service(name, passing=True)
    expect("health.service passing instances", len(nodes), 1)
    entry = nodes[0]
    expect("health.service Service.ID", entry["Service"]["ID"], sid)
    expect("health.service Service.Address", entry["Service"]["Address"], "127.0.0.1")
    expect("health.service Service.Port", entry["Service"]["Port"], 18080)
    expect("health.service Service.Tags", entry["Service"]["Tags"], ["py", "v1"])
    statuses = {ch["CheckID"]: ch["Status"] for ch in entry["Checks"]}
    expect("health.service check status", statuses.get(check_id), "passing")
    if entry["Node"].get("Address", "") == "":
        raise Mismatch("health.service Node.Address is empty")
    print("ok: health.service Node.Address")

    _, services = c.catalog.services()
    if name not in services:
        raise Mismatch(f"catalog.services: {name} missing in {services!r}")
    expect("catalog.services tags", sorted(services[name]), ["py", "v1"])

    expect("agent.service.deregister", c.agent.service.deregister(sid), True)
    _, nodes = c.health.service(name)
    expect("health.service after deregister", nodes, [])


def main(argv):
    if len(argv) != 2 or ":" not in argv[1]:
        print("usage: consul_client_check.py HOST:PORT", file=sys.stderr)
        return 2
    host, port = argv[1].rsplit(":", 1)
    c = consul.Consul(host=host, port=int(port))
    try:
        check_kv(c)
        check_blocking_kv(c)
        check_agent_and_health(c)
    except Mismatch as e:
        print(f"MISMATCH (devconsul differs from Consul as py-consul sees it): {e}", file=sys.stderr)
        return 1
    except consul.ConsulException as e:
        print(f"MISMATCH: py-consul raised {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("py-consul against devconsul: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
