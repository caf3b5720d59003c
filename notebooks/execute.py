"""Run the notebooks top to bottom and store them with their outputs (what GitHub and the docs
site show). Needs the ``notebooks`` extra (``pip install -e '.[notebooks]'``).

    python notebooks/execute.py [NAME.ipynb ...]      (default: every notebook here)

Sizes come from ``DIRECT_OPT_NB_SIZE`` (default ``small``, the size the stored outputs are
made at); each notebook runs in its own kernel with ``notebooks/`` as working directory.
Figures are stored at 72 dpi (``MPL_DPI``) to keep the repository small.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def execute(path: Path) -> float:
    """Execute ``path`` in place (outputs stored); returns the seconds it took."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=1800, resources={"metadata": {"path": str(HERE)}},
                            record_timing=False).execute()
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    return time.perf_counter() - t0


MPL_DPI = 72


def main(argv: list[str]) -> int:
    import tempfile

    os.environ.setdefault("DIRECT_OPT_NB_SIZE", "small")
    os.environ.setdefault("MPLBACKEND", "Agg")
    names = argv or sorted(p.name for p in HERE.glob("*.ipynb"))
    with tempfile.TemporaryDirectory() as tmp:  # the kernels read this matplotlibrc
        Path(tmp, "matplotlibrc").write_text(f"figure.dpi: {MPL_DPI}\n")
        os.environ["MATPLOTLIBRC"] = tmp
        for name in names:
            print(f"{name}: {execute(HERE / name):.0f}s at size {os.environ['DIRECT_OPT_NB_SIZE']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
