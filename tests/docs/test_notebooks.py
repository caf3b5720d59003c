"""The three notebooks execute top to bottom (tiny sizes) and draw figures; git keeps them with the
outputs of one complete run at the default size (what GitHub and the docs site show)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs the dev extra: pip install -e '.[dev]'")
nbclient = pytest.importorskip("nbclient", reason="needs the dev extra: pip install -e '.[dev]'")
pytest.importorskip("ipykernel", reason="needs the dev extra: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
#: notebook -> minimum number of figures it must draw
EXPECTED = {"01_compare_backends.ipynb": 8, "02_custom_constraints.ipynb": 2, "03_end_to_end.ipynb": 2}


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory, monkeypatch_module):
    """A python3 kernelspec that runs THIS interpreter (no global registration), tiny sizes,
    and one checkpoint/extraction cache shared by notebooks 01 and 03."""
    base = tmp_path_factory.mktemp("jupyter")
    spec = base / "kernels" / "python3"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "direct_opt test kernel", "language": "python"}))
    monkeypatch_module.setenv("JUPYTER_PATH", str(base))  # searched before user and system kernel dirs
    monkeypatch_module.setenv("DIRECT_OPT_NB_SIZE", "ci")
    monkeypatch_module.setenv("DIRECT_OPT_NB_CACHE", str(tmp_path_factory.mktemp("nbcache")))
    monkeypatch_module.setenv("MPLBACKEND", "Agg")
    monkeypatch_module.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    # connection files and IPython profile in temp dirs: no user config, works with a read-only HOME
    monkeypatch_module.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path_factory.mktemp("jupyter_runtime")))
    monkeypatch_module.setenv("IPYTHONDIR", str(tmp_path_factory.mktemp("ipython")))
    return base


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


#: the stored notebooks must stay small (figures at 72 dpi, see notebooks/execute.py)
MAX_BYTES = 700_000


@pytest.mark.parametrize("name", list(EXPECTED))
def test_notebooks_are_stored_with_the_outputs_of_a_complete_run(name):
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and "DIRECT_OPT_NB_SIZE" in code[0].source, f"{name}: the first cell must read the size parameter"
    # one run, top to bottom, every cell: execution counts 1, 2, 3, ...
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), f"{name}: run python notebooks/execute.py"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], name
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= EXPECTED[name], f"{name} stores {len(images)} figures, expected >= {EXPECTED[name]}"
    warnings = [o.get("text", "") for o in outputs if o.get("name") == "stderr"]
    assert not [w for w in warnings if "Warning" in w], f"{name} stores warnings: {warnings}"
    assert path.stat().st_size <= MAX_BYTES, f"{name} is {path.stat().st_size} bytes"


@pytest.mark.parametrize("name", list(EXPECTED))
def test_notebook_executes(name, kernel_env):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))  # which python ran it
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=600,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    from jupyter_client.kernelspec import KernelSpecManager

    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable  # this venv's python
    client.execute()  # raises CellExecutionError with the cell and traceback on any error
    assert nb.cells[-1].outputs[0]["text"].strip() == sys.executable, "the kernel ran another interpreter"
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= EXPECTED[name], f"{name} drew {len(images)} figures, expected >= {EXPECTED[name]}"
