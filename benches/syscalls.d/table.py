#!/usr/bin/env python3
"""The table of benches/syscalls: reads its results.tsv (round, server, workload, the load
tool's JSON summary, perf stat's CSV, note) and prints, per workload, each server's rate,
syscalls and CPU per message (or per connection cycle), the main syscalls, and the ratio of
sigyard's CPU per message to each peer's; then the targets. With --write FILE, the same
Markdown replaces the section "## Syscalls per message (benches/syscalls)" of FILE."""

import argparse
import json
import os
import re
import sys
from collections import defaultdict

SECTION = "## Syscalls per message (benches/syscalls)"
WORKLOADS = [
    ("echo", "echo, 100 connections, 1 × 64 B in flight", "message"),
    ("echo16", "echo, 100 connections, 16 × 64 B in flight", "message"),
    ("arena", "echo, 16,384 connections, 1 × 16 B in flight (HttpArena profile)", "message"),
    ("churn", "churn: connect, upgrade, one 64 B echo, close (16 at once)", "cycle"),
    ("stream", "pipe stream: one pair, 64 KiB messages, 32 in flight", "message"),
]
SERVERS = ["sigyard", "tokio", "fastws", "bun", "tcp-copy", "floor", "floor-uring"]
# Not peers: the least work a WebSocket echo can do (benches/compare.d/floor-echo).
FLOORS = ["floor", "floor-uring"]
NAMES = {
    "sigyard": "sigyard",
    "tokio": "tokio-tungstenite",
    "fastws": "fastwebsockets",
    "bun": "bun (uWebSockets)",
    "tcp-copy": "plain TCP copy",
    "floor": "floor: least work, epoll",
    "floor-uring": "floor: least work, io_uring",
}


def perf_counts(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) < 3 or not parts[0] or not parts[0][0].isdigit():
                    continue
                event = parts[2]
                if event == "raw_syscalls:sys_enter":
                    event = "all"
                elif event.startswith("syscalls:sys_enter_"):
                    event = event[len("syscalls:sys_enter_"):]
                out[event] = float(parts[0])
    except OSError:
        pass
    return out


def load(results):
    runs = defaultdict(list)  # (workload, server) -> [figures per round]
    notes = []
    here = os.path.dirname(os.path.abspath(results))
    with open(results) as f:
        for line in f:
            rnd, server, workload, js, perf, note = line.rstrip("\n").split("\t")
            # Files sit next to results.tsv (also in a --keep copy).
            js, perf = (os.path.join(here, os.path.basename(x)) for x in (js, perf))
            try:
                with open(js) as jf:
                    s = json.load(jf)
            except (OSError, ValueError):
                notes.append(f"{server} {workload} round {rnd}: no summary ({note})")
                continue
            n = s.get("completed") or s.get("messages_received") or 0
            window = s.get("window_s") or 0
            c = perf_counts(perf)
            if not n or not window or "all" not in c or "task-clock" not in c:
                notes.append(f"{server} {workload} round {rnd}: nothing measured ({note})")
                continue
            fig = {
                "rate": n / window,
                "calls": c["all"] / n,
                "cpu_us": c["task-clock"] * 1000 / n,  # task-clock is in ms
                "by": {k: v / n for k, v in c.items() if k not in ("all", "task-clock")},
                "failed": s.get("failed", 0),
                "p99": (s.get("latency_us") or {}).get("p99"),
                # Every TCP segment on the host in the window, both ends (loopback only).
                "segments": s["tcp_segments"] / n if s.get("tcp_segments") is not None else None,
            }
            # The kernel's share of that CPU (user and system time from /proc over the same
            # window, sampled at the kernel's tick), as µs per message.
            split = s.get("server_cpu_s") or {}
            total = (split.get("user") or 0) + (split.get("system") or 0)
            fig["kernel_us"] = fig["cpu_us"] * split["system"] / total if total > 0 else None
            if workload == "stream":
                size = 65536
                gib = n * size / 2**30
                fig["mib_s"] = n * size / window / 2**20
                fig["cpu_s_gib"] = c["task-clock"] / 1000 / gib
            runs[(workload, server)].append(fig)
    return runs, notes


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def fmt(x, digits=2):
    if x is None:
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    for opt in ("cmd", "date", "loadavg", "elapsed", "duration", "rounds", "skipped", "cpu", "write"):
        ap.add_argument("--" + opt, default="")
    a = ap.parse_args()
    runs, notes = load(a.results)
    md = [SECTION, ""]
    md.append(
        f"`{a.cmd}` on {a.date} ({a.cpu}; load average before: {a.loadavg}; "
        f"{a.rounds} round(s) of {a.duration} s per workload, measured in {a.elapsed} s). "
        "Each server alone on core 0, sigyard-load on core 1, each round starting one server "
        "further along the list; perf stat on the server over "
        "exactly the load tool's measured window. Per message: the server's syscalls and CPU "
        "time (task-clock) divided by the messages the load received, or by the connection "
        "cycles it completed (churn). *Of it in the kernel*: the system time's share of the "
        "server's CPU over the same window (`utime` and `stime` of /proc/PID/stat, which the "
        "kernel samples at its tick). *Ratio*: sigyard's CPU per message ÷ the peer's "
        "(below 1: sigyard uses less); with several rounds, each round's in parentheses. *TCP "
        "segments*: every segment the host sent over the window (`OutSegs` of /proc/net/snmp), "
        "the load's and the server's together. The two "
        "*floor* rows are not peers: a WebSocket echo that does the least work there is "
        "(benches/compare.d/floor-echo), on epoll and on io_uring."
    )
    md.append("")
    for wl, title, unit in WORKLOADS:
        rows = [s for s in SERVERS if runs.get((wl, s))]
        if not rows:
            continue
        md.append(f"**{title}**")
        md.append("")
        rate_head = "MiB/s" if wl == "stream" else ("cycles/s" if unit == "cycle" else "msg/s")
        cpu_head = "CPU s per GiB" if wl == "stream" else f"CPU µs per {unit}"
        md.append(
            f"| server | {rate_head} | syscalls per {unit} | {cpu_head} | of it in the kernel "
            f"| ratio | main syscalls per {unit} | TCP segments per {unit} |"
        )
        md.append("|---|---:|---:|---:|---:|---:|---|---:|")
        base = runs.get((wl, "sigyard"), [])
        for s in rows:
            figs = runs[(wl, s)]
            if wl == "stream":
                rate, cpu = mean([f["mib_s"] for f in figs]), mean([f["cpu_s_gib"] for f in figs])
                key = "cpu_s_gib"
            else:
                rate, cpu = mean([f["rate"] for f in figs]), mean([f["cpu_us"] for f in figs])
                key = "cpu_us"
            calls = mean([f["calls"] for f in figs])
            segments = mean([f["segments"] for f in figs])
            kernel = mean([f["kernel_us"] for f in figs])
            share = f"{kernel / mean([f['cpu_us'] for f in figs]):.0%}" if kernel else "—"
            ratio = ""
            if s != "sigyard" and base:
                b = mean([f[key] for f in base])
                ratio = fmt(b / cpu) if cpu else "—"
                if len(figs) > 1 and len(base) == len(figs):
                    ratio += " (" + ", ".join(fmt(x[key] / y[key]) for x, y in zip(base, figs)) + ")"
            by = defaultdict(list)
            for f in figs:
                for k, v in f["by"].items():
                    by[k].append(v)
            main_calls = sorted(((mean(v), k) for k, v in by.items()), reverse=True)
            main_calls = ", ".join(f"{k} {fmt(v)}" for v, k in main_calls if v >= 0.01)
            md.append(
                f"| {NAMES[s]} | {fmt(rate, 1)} | {fmt(calls, 3)} | {fmt(cpu, 3)} | {share} | {ratio} | {main_calls} | {fmt(segments, 3)} |"
            )
        md.append("")
    # Targets
    def fig(wl, s, key):
        return mean([f[key] for f in runs.get((wl, s), [])])

    checks = []
    peers = [s for s in ("tokio", "fastws", "bun") if any(runs.get((w, s)) for w, _, _ in WORKLOADS)]
    # One message in flight: the target holds at 100 connections and in the HttpArena profile.
    for wl, what in (("echo", "echo, 1 in flight"), ("arena", "echo, 1 in flight, 16,384 connections")):
        c = fig(wl, "sigyard", "calls")
        if c is None:
            continue
        best = min((fig(wl, p, "cpu_us") for p in peers if fig(wl, p, "cpu_us")), default=None)
        me = fig(wl, "sigyard", "cpu_us")
        cpu_ok = best is not None and me <= best
        checks.append(
            f"{what}: {fmt(c, 3)} syscalls per message (target ≤ 2.0: "
            f"{'met' if c <= 2.0 else 'not met'}); CPU per message {fmt(me / best) if best else '—'}× "
            f"the best peer's (target ≤ 1.0: {'met' if cpu_ok else 'not met'})"
        )
    def floor(wl, other):
        """What sigyard's kernel time alone is of a peer's whole CPU: the ratio it would
        reach if its own code cost nothing."""
        k = fig(wl, "sigyard", "kernel_us")
        text = f"; sigyard's kernel time alone {fmt(k / other)}× of it" if k and other else ""
        below = [(NAMES[f].split(", ")[-1], fig(wl, f, "cpu_us")) for f in FLOORS]
        below = [f"{name} {fmt(cpu / other)}×" for name, cpu in below if cpu and other]
        if below:
            text += "; the least-work floor " + ", ".join(below) + " of it"
        return text

    me = fig("echo16", "sigyard", "cpu_us")
    if me is not None:
        for p in ("tokio", "bun"):
            other = fig("echo16", p, "cpu_us")
            if other:
                checks.append(
                    f"echo, 16 in flight: CPU per message {fmt(me / other)}× {NAMES[p]}'s "
                    f"(target ≤ 0.7: {'met' if me / other <= 0.7 else 'not met'})"
                    + floor("echo16", other)
                )
    c = fig("churn", "sigyard", "calls")
    if c is not None:
        me = fig("churn", "sigyard", "cpu_us")
        best = min((fig("churn", p, "cpu_us") for p in peers if fig("churn", p, "cpu_us")), default=None)
        checks.append(
            f"churn: {fmt(c, 2)} syscalls per cycle (target ≤ 12: {'met' if c <= 12 else 'not met'}); "
            f"CPU per cycle {fmt(me / best) if best else '—'}× the best peer's "
            f"(target ≤ 0.8: {'met' if best and me / best <= 0.8 else 'not met'})"
            + floor("churn", best)
        )
    t = fig("stream", "sigyard", "mib_s")
    b = fig("stream", "tcp-copy", "mib_s")
    if t and b:
        cg, bg = fig("stream", "sigyard", "cpu_s_gib"), fig("stream", "tcp-copy", "cpu_s_gib")
        checks.append(
            f"pipe stream: {fmt(t / b)}× the plain TCP copy's throughput (target ≥ 0.85: "
            f"{'met' if t / b >= 0.85 else 'not met'}) at {fmt(cg / bg)}× its CPU per GiB "
            f"(target ≤ 1.3: {'met' if cg / bg <= 1.3 else 'not met'})"
        )
    if checks:
        md.append("Targets, from this run:")
        md.append("")
        md.extend(f"- {x}" for x in checks)
        md.append("")
    if a.skipped:
        md.append(f"Skipped: {a.skipped.strip('; ')}.")
        md.append("")
    for n in notes:
        md.append(f"- note: {n}")
    text = "\n".join(md).rstrip() + "\n"
    print(text)
    if a.write:
        with open(a.write) as f:
            doc = f.read()
        pat = re.compile(r"^" + re.escape(SECTION) + r"\n.*?(?=^## |\Z)", re.S | re.M)
        if pat.search(doc):
            doc = pat.sub(lambda _: text + "\n", doc, count=1)
        else:
            doc = doc.rstrip() + "\n\n" + text
        with open(a.write, "w") as f:
            f.write(doc)
        print(f"(written to {a.write})", file=sys.stderr)


if __name__ == "__main__":
    main()
