#!/usr/bin/env python3
"""Turns tests/bench/run.sh's raw TSV files into the results block of docs/benchmarks.md.

Usage: report.py results.tsv h2.tsv idle.txt facts.txt docs/benchmarks.md [policies.tsv [tls.tsv]]

Only the text between BEGIN and END markers is replaced; the rest of the document (propagation,
profile, how to rerun) is kept. A document without the markers is replaced whole by a skeleton.
"""

import statistics
import sys

BEGIN = "<!-- bench:results:begin (written by tests/bench/run.sh; edits here are overwritten) -->"
END = "<!-- bench:results:end -->"
LABEL = {
    "direct": "direct to origin (no proxy)",
    "gatewayd": "**gatewayd**",
    "gatewayd-defaults": "gatewayd (defaults: request ids, X-Forwarded-\\*, latency histograms)",
    "gatewayd-1k-routes": "gatewayd, 1,000 routes + 10,000 endpoints",
    "nginx": "nginx",
    "haproxy": "HAProxy",
    "envoy": "Envoy",
    "caddy": "Caddy",
}
ORDER = list(LABEL)


def num(s):
    try:
        return float(s)
    except ValueError:
        return None


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec="{:,.0f}", na="–"):
    return na if v is None else spec.format(v)


def read_tsv(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(line.rstrip("\n").split("\t"))
    return rows


POLICY_LABEL = {
    "none": "no policies",
    "rate_limit": "`rate_limit` (key `client_ip`, never reached)",
    "jwt": "`jwt` (RS256, 2048-bit key, `iss` + `aud` checked, one claim forwarded)",
    "rate_limit+jwt": "`rate_limit` + `jwt`",
}


TLS_ROW = {
    "keepalive": "keep-alive HTTPS (`wrk -t1 -c64`), requests per proxy CPU-second",
    "handshake": "full handshake per connection (`openssl s_time -new -tls1_3`, one GET each), connections per proxy CPU-second",
    "cleartext": "cleartext (`wrk -t1 -c64`), requests per proxy CPU-second",
}


def tls_section(lines, trows):
    """tests/bench/tls.sh's rows (issue 10): gatewayd, nginx and HAProxy terminating TLS 1.3."""
    med_of = {}
    samples = {}
    for r in trows:
        row, system = r[0], r[1]
        system = "gatewayd" if system == r[2] else system
        med_of[(row, system)] = num(r[3])
        samples[(row, system)] = [num(v) for v in r[5].split()] if len(r) > 5 else []
    rows = [row for row in TLS_ROW if (row, "nginx") in med_of]
    lines.append("")
    lines.append("### TLS termination (tests/bench/tls.sh, medians)")
    lines.append("")
    lines.append(
        "Each proxy terminates the same ECDSA P-256 certificate with TLS 1.3 only, one worker, in "
        "front of the same upstreams; the load generators' CPU is not counted."
    )
    lines.append("")
    lines.append("| row | **gatewayd** | nginx | HAProxy | **gatewayd ÷ nginx** | HAProxy ÷ nginx |")
    lines.append("|---|---|---|---|---|---|")
    for row in rows:
        base = med_of.get((row, "nginx"))
        g = med_of.get((row, "gatewayd"))
        h = med_of.get((row, "haproxy"))
        lines.append(
            "| {} | {} | {} | {} | {} | {} |".format(
                TLS_ROW[row],
                fmt(g),
                fmt(base),
                fmt(h),
                fmt(None if not base or g is None else g / base, "{:.2f}×"),
                fmt(None if not base or h is None else h / base, "{:.2f}×"),
            )
        )
    lines.append("")
    lines.append("Per-round samples (gatewayd / nginx / HAProxy):")
    lines.append("")
    for row in rows:
        parts = [", ".join(fmt(v) for v in samples.get((row, s), [])) for s in ("gatewayd", "nginx", "haproxy")]
        lines.append(f"- {row}: " + " / ".join(parts))


def policy_section(lines, prows):
    """The policy routes of one gatewayd (issue 12): req per CPU-second and the µs each costs."""
    pol = {}
    for r in prows:
        pol.setdefault(r[1], []).append({"rps": num(r[2]), "rpc": num(r[5]), "err": r[6]})
    pm = {n: {k: med([x[k] for x in v]) for k in ("rps", "rpc")} for n, v in pol.items()}
    for n, v in pol.items():
        pm[n]["all"] = [x["rpc"] for x in v]
        pm[n]["err"] = sorted({x["err"] for x in v if x["err"] != "-"})
    base = pm.get("none", {}).get("rpc")

    def us(v):
        return None if not v else 1e6 / v

    lines.append("")
    lines.append("### Policies (issue 12): what a route's policies cost (medians)")
    lines.append("")
    lines.append(
        "One more gatewayd: the **gatewayd** config plus four routes to the same upstreams, each "
        "measured with `wrk -t1 -c64` carrying the same valid `Authorization: Bearer` token (an RS256 "
        "JWT, 2048-bit key, read from a JWKS file). Cost = the route's proxy CPU per request minus "
        "the no-policy route's."
    )
    lines.append("")
    lines.append("| route | req/s | **req per CPU-second** | ÷ no policies | µs of proxy CPU per request | **cost, µs per request** | errors |")
    lines.append("|---|---|---|---|---|---|---|")
    for name in POLICY_LABEL:
        if name not in pm:
            continue
        x = pm[name]
        cost = None if name == "none" or not base or not x["rpc"] else us(x["rpc"]) - us(base)
        lines.append(
            "| {} | {} | {} | {} | {} | {} | {} |".format(
                POLICY_LABEL[name],
                fmt(x["rps"]),
                fmt(x["rpc"]),
                fmt(None if not base or not x["rpc"] else x["rpc"] / base, "{:.2f}×"),
                fmt(us(x["rpc"]), "{:.1f}"),
                "–" if name == "none" else fmt(cost, "{:+.1f}"),
                ", ".join(x["err"]) or "0",
            )
        )
    lines.append("")
    lines.append("Per-round req per CPU-second:")
    lines.append("")
    for name in POLICY_LABEL:
        if name in pm:
            lines.append(f"- {POLICY_LABEL[name]}: " + ", ".join(fmt(v) for v in pm[name]["all"]))


def main():
    res_path, h2_path, idle_path, facts_path, out_path = sys.argv[1:6]
    prows = read_tsv(sys.argv[6]) if len(sys.argv) > 6 else []
    trows = [r for r in (read_tsv(sys.argv[7]) if len(sys.argv) > 7 else []) if r[0] != "row"]
    rows = read_tsv(res_path)
    h2rows = read_tsv(h2_path)
    facts = {}
    with open(facts_path, encoding="utf-8") as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            facts.setdefault(k, []).append(v)
    idle = {}
    with open(idle_path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                idle[parts[0]] = (int(parts[1]), int(parts[2]))

    by = {}
    rounds = {}
    for r in rows:
        rnd, name = r[0], r[1]
        rec = {
            "rps": num(r[2]),
            "cpu": num(r[4]),
            "rpc": num(r[5]),
            "p50": num(r[6]),
            "p99": num(r[7]),
            "rss": num(r[8]),
            "thr": num(r[9]),
            "err": r[10],
        }
        by.setdefault(name, []).append(rec)
        rounds.setdefault(rnd, {})[name] = rec
    # Added latency per round (proxy minus the same round's direct run), then the median.
    added = {}
    for rnd, systems in rounds.items():
        d = systems.get("direct")
        if not d:
            continue
        for name, rec in systems.items():
            if name == "direct" or rec["p50"] is None or d["p50"] is None:
                continue
            added.setdefault(name, []).append((rec["p50"] - d["p50"], rec["p99"] - d["p99"]))
    m = {}
    for name, recs in by.items():
        m[name] = {k: med([x[k] for x in recs]) for k in ("rps", "cpu", "rpc", "p50", "p99", "rss", "thr")}
        m[name]["rpc_all"] = [x["rpc"] for x in recs]
        m[name]["err"] = sorted({x["err"] for x in recs if x["err"] != "-"})
        a = added.get(name, [])
        m[name]["a50"] = med([x[0] for x in a])
        m[name]["a99"] = med([x[1] for x in a])
    nginx = m.get("nginx", {}).get("rpc")
    envoy = m.get("envoy", {}).get("rpc")

    def ratio(v, base):
        return None if v is None or not base else v / base

    f1 = lambda k: facts.get(k, [""])[0]  # noqa: E731
    lines = [BEGIN, ""]
    lines.append(f"Run of {f1('date')} — {f1('params')}.")
    lines.append("")
    lines.append(
        f"Machine: {f1('nproc')} CPUs ({f1('cpu')}), {f1('mem')}, {f1('os')}, {f1('kernel')}; "
        f"load average {f1('load')}."
    )
    lines.append("")
    lines.append(
        "Versions: gatewayd " + f1("gatewayd") + "; " + f1("rustc") + "; " + f1("nginx") + "; "
        + f1("haproxy")
        + ("; Envoy " + f1("envoy") if "envoy" in facts else "")
        + ("; Caddy " + f1("caddy") if "caddy" in facts else "")
        + "; load: " + f1("wrk") + ", " + f1("oha")
        + (", " + f1("h2load") if "h2load" in facts else "")
        + "."
    )
    for s in facts.get("skipped", []):
        lines.append("")
        lines.append(f"Skipped: {s}.")
    if f1("note"):
        lines.append("")
        lines.append(f"**Note:** {f1('note')}")
    lines.append("")
    lines.append("### HTTP/1.1: throughput per CPU and added latency (medians over rounds)")
    lines.append("")
    lines.append(
        "| system | req/s (wrk, 64 conns) | proxy CPU-s per run | **req per CPU-second** | ÷ nginx | ÷ Envoy "
        "| p50 @2,000 rps | p99 @2,000 rps | added p50 | **added p99** | RSS idle | RSS after load | threads |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in ORDER:
        if name not in m:
            continue
        x = m[name]
        ir = idle.get(name)
        lines.append(
            "| {} | {} | {} | {} | {} | {} | {} ms | {} ms | {} | {} | {} | {} | {} |".format(
                LABEL[name],
                fmt(x["rps"]),
                fmt(x["cpu"], "{:.2f}"),
                fmt(x["rpc"]),
                fmt(ratio(x["rpc"], nginx), "{:.2f}×"),
                fmt(ratio(x["rpc"], envoy), "{:.2f}×"),
                fmt(x["p50"], "{:.3f}"),
                fmt(x["p99"], "{:.3f}"),
                fmt(x["a50"], "{:+.3f} ms"),
                fmt(x["a99"], "{:+.3f} ms"),
                fmt(ir[0] / 1024 if ir else None, "{:.1f} MiB"),
                fmt(x["rss"] / 1024 if x["rss"] else None, "{:.1f} MiB"),
                fmt(x["thr"]),
            )
        )
    if "gatewayd" in m and "gatewayd-defaults" in m:
        lines.append("")
        lines.append(
            "**gatewayd** runs `tests/bench/gatewayd.toml` with `request_id`, `forwarded_headers` and "
            "`latency_histograms` off (the 1,000-route variant too); the defaults row runs "
            "`gatewayd-defaults.toml`, the same scenario with those three on."
        )
    lines.append("")
    lines.append("Per-round req per CPU-second (to judge the spread):")
    lines.append("")
    for name in ORDER:
        if name in m and name != "direct":
            lines.append(f"- {LABEL[name]}: " + ", ".join(fmt(v) for v in m[name]["rpc_all"]))
    errs = [(n, m[n]["err"]) for n in ORDER if n in m and m[n]["err"]]
    if errs:
        lines.append("")
        lines.append("Errors seen: " + "; ".join(f"{LABEL[n]}: {', '.join(e)}" for n, e in errs))

    if h2rows:
        h2 = {}
        for r in h2rows:
            h2.setdefault(r[1], []).append({"rps": num(r[2]), "rpc": num(r[5]), "bad": num(r[6])})
        hm = {n: {k: med([x[k] for x in v]) for k in ("rps", "rpc", "bad")} for n, v in h2.items()}
        hn = hm.get("nginx", {}).get("rpc")
        he = hm.get("envoy", {}).get("rpc")
        lines.append("")
        lines.append("### HTTP/2 (h2c, prior knowledge) from client to proxy (medians)")
        lines.append("")
        lines.append(
            "`h2load -t1 -c64 -m10 -D 10` (64 connections × 10 streams); the proxies still speak "
            "HTTP/1.1 with keep-alive to the upstreams."
        )
        lines.append("")
        lines.append("| system | req/s | req per CPU-second | ÷ nginx | ÷ Envoy | non-2xx/failed |")
        lines.append("|---|---|---|---|---|---|")
        for name in ORDER:
            if name in hm:
                x = hm[name]
                lines.append(
                    "| {} | {} | {} | {} | {} | {} |".format(
                        LABEL[name],
                        fmt(x["rps"]),
                        fmt(x["rpc"]),
                        fmt(ratio(x["rpc"], hn), "{:.2f}×"),
                        fmt(ratio(x["rpc"], he), "{:.2f}×"),
                        fmt(x["bad"]),
                    )
                )
    if trows:
        tls_section(lines, trows)
    if prows:
        policy_section(lines, prows)
    lines.append("")
    lines.append(END)
    block = "\n".join(lines)

    try:
        with open(out_path, encoding="utf-8") as f:
            doc = f.read()
    except FileNotFoundError:
        doc = ""
    if BEGIN in doc and END in doc:
        head = doc[: doc.index(BEGIN)]
        tail = doc[doc.index(END) + len(END):]
        doc = head + block + tail
    else:
        doc = "# Benchmarks\n\n## Results\n\n" + block + "\n"
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(doc)


if __name__ == "__main__":
    main()
