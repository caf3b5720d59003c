"""Out-of-core / GPU scaling study: solve time and peak memory vs N (``solvers.py --scale``).

    python benchmarks/solvers.py --scale                                # CPU, N = 1e4..1e6, r=256
    python benchmarks/solvers.py --scale --sizes 10000,100000,1000000,10000000
    python benchmarks/solvers.py --scale --device cuda --r 2048 --sizes 100000,1000000 --compare cpu

For every N the instance (same generator as ``solvers.py``, written block by block) is
stored as a float16 ``.npy`` file and memory-mapped read-only, so G is never held in RAM
as a whole.  Each (N, backend) solve runs in a fresh subprocess that reports

* ``time_s``: wall time of ``solve`` (relaxation + rounding + local search + certificates);
* ``peak_rss``: VmHWM of the subprocess (includes the file pages of the memory map that
  the kernel kept resident: they are page cache, reclaimable, not a copy);
* ``peak_anon``: the largest anonymous (heap) resident size seen by a 20 ms sampler
  (RssAnon): what the solver itself allocated.  Out-of-core means peak_anon << size of G.

Then the exponent b of time ~ N^b is fitted by least squares on log-log (b ~ 1: linear).
With ``--device cuda`` G is copied to the GPU once (storage dtype kept) when it fits,
else streamed block by block; ``--compare cpu`` also solves every size on the CPU (numpy,
same memory map) in the same run and prints the GPU/CPU speed ratio.  Sizes whose file
would not fit in the free disk space (``--dir``) are skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GEN_BLOCK = 1 << 16  # columns generated per block (part of the instance definition)


# ------------------------------------------------------------------ instance on disk
def write_instance(path: str, n: int, r: int, seed: int = 0, k_stiff: int = 32) -> tuple[str, str]:
    """Write G (r, N) float16 .npy and a (N,) float64 .npy under ``path``; returns the two files.

    Same recipe as ``solvers.make_instance`` (shared direction, heavy-tailed per-sample
    scales, stiff costs from decaying eigenvalues), generated per block of GEN_BLOCK columns
    from (seed, block) so any N is produced with O(r * GEN_BLOCK) memory.
    """
    os.makedirs(path, exist_ok=True)
    g_file, a_file = os.path.join(path, f"G_n{n}_r{r}_s{seed}.npy"), os.path.join(path, f"a_n{n}_r{r}_s{seed}.npy")
    if os.path.exists(g_file) and os.path.exists(a_file):
        return g_file, a_file
    shared = np.random.default_rng([seed, 0]).standard_normal(r) / np.sqrt(r)
    lam = 1.0 / np.arange(1, k_stiff + 1)
    G = np.lib.format.open_memmap(g_file + ".tmp", mode="w+", dtype=np.float16, shape=(r, n))
    a = np.empty(n)
    for b, s in enumerate(range(0, n, GEN_BLOCK)):
        e = min(n, s + GEN_BLOCK)
        rng = np.random.default_rng([seed, 1, b])
        m = e - s
        scale = rng.lognormal(0.0, 0.5, m).astype(np.float32)
        align = rng.normal(0.3, 0.3, m).astype(np.float32)
        blk = rng.standard_normal((r, m), dtype=np.float32)
        blk += 3.0 * np.outer(shared.astype(np.float32), align)
        blk *= scale
        G[:, s:e] = blk
        Gs = rng.standard_normal((k_stiff, m), dtype=np.float32) * scale
        a[s:e] = (lam[:, None] * Gs.astype(np.float64) ** 2).sum(0)
    G.flush()
    del G
    os.replace(g_file + ".tmp", g_file)
    np.save(a_file, a, allow_pickle=False)
    return g_file, a_file


# ---------------------------------------------------------------- one solve (child)
class _MemSampler:
    """Peak RssAnon (bytes) of this process, sampled every ``dt`` seconds in a thread."""

    def __init__(self, dt: float = 0.02) -> None:
        self.dt, self.peak, self._stop = dt, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read(field: str) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.read("RssAnon"))
            time.sleep(self.dt)

    def __enter__(self) -> "_MemSampler":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.read("RssAnon"))


def child(args: argparse.Namespace) -> int:
    """Solve one stored instance and print one JSON line."""
    sys.path.insert(0, ROOT)
    from direct_opt import SelectionProblem, solve

    G = np.load(args.g_file, mmap_mode="r", allow_pickle=False)
    a = np.load(args.a_file, allow_pickle=False)
    n = G.shape[1]
    k = n // 10
    import torch  # noqa: F401  (imported lazily by the float16 upcast: a one-time cost, not solve time)

    base_anon = _MemSampler.read("RssAnon")
    to_device_s = 0.0
    with _MemSampler() as mem:
        prob = SelectionProblem(G, a, k=k, tau=0.1 * a.mean() * k, validate=False)
        if args.device != "cpu":  # CUDA context creation is not solve time; the copy of G is timed apart
            from direct_opt.linop import use_device

            torch.zeros(1, device=args.device).sum().item()
            t = time.perf_counter()
            use_device(prob, args.device)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            to_device_s = time.perf_counter() - t
        t, ru = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        res = solve(prob, backend=args.backend, seed=args.seed, time_limit=args.time_limit)
        elapsed = time.perf_counter() - t
        ru2 = resource.getrusage(resource.RUSAGE_SELF)
        cpu_s = (ru2.ru_utime - ru.ru_utime) + (ru2.ru_stime - ru.ru_stime)
    print(json.dumps({
        "n": n, "r": int(G.shape[0]), "backend": args.backend, "device": args.device, "time_s": elapsed, "cpu_s": cpu_s, "to_device_s": to_device_s,
        "resident": bool(getattr(prob.op, "is_torch", False) and not getattr(prob.op, "host_to_device", False)),
        "objective": res.objective, "feasible": res.feasible, "status": res.status, "iterations": res.iterations,
        "certified_ratio": res.certified_ratio, "peak_rss": _MemSampler.read("VmHWM"),
        "peak_anon": mem.peak, "base_anon": base_anon, "g_bytes": int(G.size) * G.itemsize,
        "swaps": res.info.get("swaps"),
    }))
    return 0


# ------------------------------------------------------------------------- driver
def fit_exponent(ns, ts) -> float:
    """Least-squares slope of log(time) on log(N)."""
    if len(ns) < 2:
        return float("nan")
    return float(np.polyfit(np.log(np.asarray(ns, float)), np.log(np.asarray(ts, float)), 1)[0])


def _run_child(g_file, a_file, backend, device, seed, time_limit, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--g-file", g_file, "--a-file", a_file,
           "--backend", backend, "--device", device, "--seed", str(seed)]
    if time_limit:
        cmd += ["--time-limit", str(time_limit)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                prog="solvers.py --scale")
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--r", type=int, default=256)
    p.add_argument("--backends", default="sca-exact")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--compare", default=None, help="'cpu': also solve on the CPU in the same run, print the ratio")
    p.add_argument("--compare-max-n", type=int, default=200000,
                   help="run the --compare device only for N up to this (a CPU solve at r=2048, N=1e6 takes minutes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dir", default="/tmp/direct_opt_scale", help="where the float16 instances are written")
    p.add_argument("--keep", action="store_true", help="keep the instance files (default: delete after use)")
    p.add_argument("--time-limit", type=float, default=None, help="solve time limit per run (seconds)")
    p.add_argument("--timeout", type=float, default=3600.0, help="kill a run after this many seconds")
    p.add_argument("--json", default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--g-file", help=argparse.SUPPRESS)
    p.add_argument("--a-file", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    devices = [args.device] + ([args.compare] if args.compare and args.compare != args.device else [])
    os.makedirs(args.dir, exist_ok=True)
    print(f"scale study: r={args.r}, K=N/10, tau_rel=0.1, G float16 memory-mapped from {args.dir}, "
          f"{os.cpu_count()} CPU cores, devices {devices}")
    print(f"load average at start: {os.getloadavg()[0]:.1f} (time_s is wall time; cpu_s the CPU time of the solve)")
    print(f"{'N':>10s} {'backend':11s} {'device':7s} {'time_s':>9s} {'cpu_s':>8s} {'G_GB':>6s} {'peakRSS_GB':>10s} "
          f"{'peakAnon_GB':>11s} {'feasible':>8s} {'cert':>6s} {'iters':>5s}")
    rows = []
    for n in sizes:
        need = args.r * n * 2 + n * 8 + (64 << 20)
        free = shutil.disk_usage(args.dir).free
        g_file = os.path.join(args.dir, f"G_n{n}_r{args.r}_s{args.seed}.npy")
        if not os.path.exists(g_file) and need > 0.9 * free:
            print(f"{n:>10d} skipped: needs {need / 1e9:.1f} GB on {args.dir}, {free / 1e9:.1f} GB free")
            continue
        t = time.perf_counter()
        g_file, a_file = write_instance(args.dir, n, args.r, args.seed)
        gen_s = time.perf_counter() - t
        for b in backends:
            for dev in devices:
                if dev != args.device and n > args.compare_max_n:
                    continue
                row = _run_child(g_file, a_file, b, dev, args.seed, args.time_limit, args.timeout)
                row.update({"n": n, "backend": b, "device": dev, "gen_s": gen_s})
                rows.append(row)
                if "error" in row:
                    print(f"{n:>10d} {b:11s} {dev:7s} error: {row['error']}")
                    continue
                cert = f"{row['certified_ratio']:6.3f}" if row["certified_ratio"] is not None else "   n/a"
                print(f"{n:>10d} {b:11s} {dev:7s} {row['time_s']:9.2f} {row['cpu_s']:8.1f} {row['g_bytes'] / 1e9:6.2f} "
                      f"{row['peak_rss'] / 1e9:10.2f} {row['peak_anon'] / 1e9:11.2f} {str(row['feasible']):>8s} "
                      f"{cert} {row['iterations']:5d}" + (f"  (+{row['to_device_s']:.2f} s copying G to {dev} "
                      f"before the solve, {'resident' if row['resident'] else 'streamed'})" if dev != "cpu" else ""),
                      flush=True)
        if not args.keep:
            for f in (g_file, a_file):
                os.remove(f)
    print()
    for b in backends:
        for dev in devices:
            ok = [r for r in rows if r["backend"] == b and r["device"] == dev and "error" not in r]
            if len(ok) >= 2:
                ns, ts, cs = [r["n"] for r in ok], [r["time_s"] for r in ok], [r["cpu_s"] for r in ok]
                print(f"fitted exponent time ~ N^b: {b} on {dev}: b = {fit_exponent(ns, ts):.2f} for wall time, "
                      f"{fit_exponent(ns, cs):.2f} for CPU time (N = {min(ns)}..{max(ns)}; b = 1 is linear)")
    if len(devices) == 2:
        for b in backends:
            for n in sizes:
                pair = {r["device"]: r for r in rows if r["n"] == n and r["backend"] == b and "error" not in r}
                if len(pair) == 2:
                    t0, t1 = pair[devices[0]]["time_s"], pair[devices[1]]["time_s"]
                    same = pair[devices[0]]["objective"] == pair[devices[1]]["objective"]
                    print(f"N={n} {b}: {devices[0]} {t0:.2f} s vs {devices[1]} {t1:.2f} s -> "
                          f"{devices[0]} is {t1 / t0:.1f}x faster (same objective: {same}, rel diff "
                          f"{abs(pair[devices[0]]['objective'] / pair[devices[1]]['objective'] - 1):.1e})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
