"""Print the measured CPU-vs-CUDA differences behind docs/reliability.md (needs a GPU).

    python tests/reliability/cuda_tolerance_report.py [DEVICE]

One JSON object: relative differences of the extracted stats (losses, grad_norms, eigvals,
a_stiff, the flat Gram matrix) and, per backend, whether the CUDA selection is identical,
its Jaccard overlap with the CPU one and the relative objective difference.  The asserted
bounds are ``CUDA_TOLERANCES`` in test_reproducibility.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import torch

    from tests.reliability import _lib
    from tests.reliability.test_reproducibility import CUDA_TOLERANCES

    device = sys.argv[1] if len(sys.argv) > 1 else "cuda"
    report = {"device": torch.cuda.get_device_name(0) if device.startswith("cuda") else device,
              "torch": torch.__version__, "tolerances": CUDA_TOLERANCES, "measured": _lib.cpu_cuda_differences(device)}
    print(json.dumps(report, indent=1))
