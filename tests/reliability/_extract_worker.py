"""Child process for the fault tests: run the tiny extraction with an out_dir.

    python _extract_worker.py OUT_DIR [--pause PATTERN:COUNT] [--fsize-at PATTERN:COUNT] [--slow SECONDS]

--pause: after the COUNT-th atomic .npy write whose path contains PATTERN, create
OUT_DIR/.paused and wait until OUT_DIR/.go exists (the parent SIGKILLs it, or lets it go).
--fsize-at: just before the COUNT-th such write, lower RLIMIT_FSIZE to 0 bytes (SIGXFSZ
ignored), so that write -- and every later one -- fails in the kernel with EFBIG, the way a
full disk fails with ENOSPC.
--slow: sleep this long per pool sample read (for kills at random times).
Prints one JSON line {"checksum": ...} when done, or {"error": TYPE, "errno": N, "message": ...}
and exits 3 when the extraction raised.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.reliability import _lib  # noqa: E402


class SlowPool(Sequence):
    def __init__(self, items, delay):
        self.items, self.delay = items, delay

    def __len__(self):
        return len(self.items)

    def __iter__(self):  # the data fingerprint iterates: not slowed
        return iter(self.items)

    def __getitem__(self, i):
        time.sleep(self.delay)
        return self.items[i]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--pause", default=None)
    ap.add_argument("--fsize-at", default=None)
    ap.add_argument("--slow", type=float, default=0.0)
    args = ap.parse_args()
    out = Path(args.out_dir)
    if args.pause or args.fsize_at:
        import direct_opt.extract.shards as shards_mod
        import direct_opt.stats as stats_mod

        pattern, count = (args.pause or args.fsize_at).rsplit(":", 1)
        seen = {"n": 0}
        real = stats_mod.write_npy_atomic

        def hooked(path, arr):
            if args.fsize_at and pattern in str(path) and seen["n"] + 1 == int(count):
                import resource
                import signal

                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
            digest = real(path, arr)
            if pattern in str(path):
                seen["n"] += 1
                if args.pause and seen["n"] == int(count):
                    (out / ".paused").write_text(str(path))
                    deadline = time.monotonic() + 300
                    while not (out / ".go").exists() and time.monotonic() < deadline:
                        time.sleep(0.02)
            return digest

        stats_mod.write_npy_atomic = hooked
        shards_mod.write_npy_atomic = hooked
    pool = _lib.data(_lib.N_POOL, 1)
    if args.slow:
        pool = SlowPool(pool, args.slow)
    try:
        st = _lib.extract(str(out), pool)
    except Exception as exc:  # reported to the parent test, which checks type, errno and message
        print(json.dumps({"error": type(exc).__name__, "errno": getattr(exc, "errno", None), "message": str(exc)}),
              flush=True)
        sys.exit(3)
    print(json.dumps({"checksum": st.checksum()}), flush=True)


if __name__ == "__main__":
    main()
