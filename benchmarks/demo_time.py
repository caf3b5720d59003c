"""How long the demo takes: `direct-opt demo --quick` and `direct-opt demo`, wall and CPU time.

    python benchmarks/demo_time.py [--only quick|default] [--json demo_time.json] [--keep DIR]

Each configuration runs in a fresh child process (its own output directory, so nothing is
reused from an earlier run) and is timed from outside: wall-clock time, and the CPU time of
the child (user + system, from ``resource.getrusage``). The demo's computations run at one
torch thread (for bit-identical results on every machine), so on an idle machine its wall time
is close to its CPU time; on a loaded machine the wall time grows with the load and the CPU
time does not. The load average is printed before and after, with the promise each figure is
held to (quick <= 60 s, default <= 5 min, on an idle 2-core machine) and the phase breakdown
from the demo's own ``timings.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: wall-clock promise on an idle 2-core machine (seconds); quoted in README and `demo --help`.
PROMISE_S = {"quick": 60.0, "default": 300.0}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def time_demo(kind: str, out_dir: Path) -> dict:
    """Run one demo configuration in a child process; wall, CPU and the demo's phase timings."""
    argv = [sys.executable, "-m", "direct_opt.cli", "demo", "--out", str(out_dir), "--quiet"]
    if kind == "quick":
        argv.append("--quick")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = _load()
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"demo {kind} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    timings = json.loads((out_dir / "timings.json").read_text())
    verdict = json.loads((out_dir / "results.json").read_text())["verdict"]
    return {"kind": kind, "wall_s": wall, "cpu_s": cpu, "promise_wall_s": PROMISE_S[kind],
            "load_before": load_before, "load_after": _load(), "phases_s": timings["phases"], "verdict": verdict}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=sorted(PROMISE_S), default=None, help="time one configuration only")
    ap.add_argument("--json", default=None, help="also write the measurements as JSON here")
    ap.add_argument("--keep", default=None, help="write the demo outputs under DIR/quick and DIR/default and keep "
                                                 "them (default: a temporary directory, removed afterwards)")
    args = ap.parse_args(argv)
    kinds = [args.only] if args.only else ["quick", "default"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; python {platform.python_version()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="demo_time_") as tmp:
        for kind in kinds:
            out = Path(args.keep or tmp) / kind
            if out.exists():
                raise SystemExit(f"{out} exists; the benchmark times a fresh run (remove it or pick another --keep).")
            r = time_demo(kind, out)
            rows.append(r)
            ph = ", ".join(f"{k} {v:.1f}s" for k, v in r["phases_s"].items() if v is not None)
            cpu_ok = "within" if r["cpu_s"] <= r["promise_wall_s"] else "OVER"
            print(f"demo {'--quick' if kind == 'quick' else '(default)'}: wall {r['wall_s']:.1f}s, "
                  f"CPU {r['cpu_s']:.1f}s ({cpu_ok} the {r['promise_wall_s']:.0f}s promise for an idle 2-core "
                  f"machine); load average {r['load_before']} -> {r['load_after']}\n  phases (wall): {ph}")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": rows, "machine": platform.machine(),
                                               "cpus": os.cpu_count()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
