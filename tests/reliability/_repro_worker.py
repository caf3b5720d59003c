"""Child process for the reproducibility tests: ``_lib.repro_record`` at a given thread count.

    python _repro_worker.py STATS_DIR THREADS

Sets the BLAS/OpenMP thread variables before numpy loads and ``torch.set_num_threads``;
prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    threads = sys.argv[2]
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = threads
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import torch

    torch.set_num_threads(int(threads))
    from tests.reliability import _lib

    print(json.dumps(_lib.repro_record(sys.argv[1])), flush=True)
