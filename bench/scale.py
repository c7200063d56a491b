#!/usr/bin/env python3
"""Start N sandboxes at once; report successes, wall time and per-sandbox start latency.

Start latency of one sandbox: from just before its nsrun is spawned to the moment its
command reads the clock inside the sandbox (CLOCK_REALTIME is shared by namespaces).
Usage: scale.py LAUNCHER N [--row]  -> one JSON object, or a Markdown table row.
LAUNCHER is a command that takes `-- COMMAND...` (nsrun) or, with spaces, a prefix that
takes COMMAND directly (e.g. "unshare --net --mount --pid --fork", the floor).
"""
import json, subprocess, sys, time

launcher, n = sys.argv[1], int(sys.argv[2])
prefix = launcher.split() if " " in launcher else [launcher, "--"]
probe = "import time; print(time.time_ns())"
procs = []
wall0 = time.time_ns()
for _ in range(n):
    t0 = time.time_ns()
    p = subprocess.Popen(prefix + ["python3", "-S", "-c", probe],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs.append((t0, p))
lat, ok, errors = [], 0, []
for t0, p in procs:
    out, err = p.communicate()
    if p.returncode == 0:
        ok += 1
        lat.append((int(out.strip()) - t0) / 1e6)
    elif len(errors) < 3:
        errors.append(err.decode(errors="replace").strip())
wall = (time.time_ns() - wall0) / 1e6
lat.sort()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
if "--row" in sys.argv:
    note = f" ({errors[0]})" if errors else ""
    label = sys.argv[sys.argv.index("--row") + 1] if len(sys.argv) > sys.argv.index("--row") + 1 else ""
    print(f"| {label} | {n} | {ok}/{n}{note} | {wall:.0f} | {pick(0.50):.1f} | {pick(0.99):.1f} |")
else:
    print(json.dumps({"n": n, "ok": ok, "wall_ms": wall, "p50_ms": pick(0.50),
                      "p99_ms": pick(0.99), "errors": errors}))
