"""`direct-opt` imports torch only for the commands that need it (extract, demo, evaluate).

torch takes a second or more to import.  Starting `direct-opt`, parsing any command and
`direct-opt backends` do not import it.  `solve` and `compare` need no torch either: with
torch made unimportable they still give a feasible selection.  (When torch is installed
their Gram pass, direct_opt/linop.py, still imports it for a faster B Bᵀ; see
docs/reliability.md.)  Each check runs in a fresh interpreter, since this test process has
torch loaded already.
"""

from __future__ import annotations

import json
import subprocess
import sys

from . import _lib

SCRIPT = r"""
import contextlib, io, json, sys
from direct_opt.cli import main
stats, out = sys.argv[1], sys.argv[2]
seen = {}
def step(name, argv):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(argv)
    seen[name] = {"rc": rc, "torch": sys.modules.get("torch") is not None, "stdout": buf.getvalue()}
import direct_opt.extract, direct_opt.extract.config, direct_opt.extract.shards  # noqa: E401
seen["import direct_opt.extract"] = {"rc": 0, "torch": "torch" in sys.modules, "stdout": ""}
step("help", ["--help"])
step("backends", ["backends"])
sys.modules["torch"] = None  # from here on `import torch` raises ImportError
step("solve", ["solve", "--stats", stats, "-k", "5", "--tau-rel", "2", "--out", out])
step("solve --mmap", ["solve", "--stats", stats, "-k", "5", "--tau-rel", "2", "--mmap"])
step("compare", ["compare", "--stats", stats, "-k", "5", "--tau-rel", "2", "--backends", "sca-exact,greedy"])
del sys.modules["torch"]
step("extract --help", ["extract", "--help"])
print(json.dumps(seen))
"""


def test_startup_and_backends_do_not_import_torch_and_solve_works_without_it(tmp_path):
    stats = _lib.random_stats(n=60).save(tmp_path / "stats")
    out = tmp_path / "sel.json"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(stats), str(out)], capture_output=True, text=True,
                          timeout=120, env=_lib.child_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("import direct_opt.extract", "help", "backends", "solve", "solve --mmap", "compare"):
        assert seen[name]["rc"] == 0 and seen[name]["torch"] is False, (name, seen[name])
    assert "sca-exact" in seen["backends"]["stdout"]
    result = json.loads(out.read_text())["result"]
    assert result["status"] != "infeasible" and len(set(result["indices"])) == 5
    # the help still lists every command, and `extract` still gets its real parser (and torch)
    assert all(c in seen["help"]["stdout"] for c in ("extract", "evaluate", "demo", "compare"))
    assert seen["extract --help"]["rc"] == 0 and "--k-sketch" in seen["extract --help"]["stdout"]
    assert seen["extract --help"]["torch"] is True


def test_ctrl_c_while_a_command_imports_torch_is_one_line(monkeypatch, capsys):
    """The torch-importing subcommand modules are imported inside main's handlers (lazily)."""
    import importlib

    from direct_opt import cli

    real = importlib.import_module

    def interrupted(name, *args):
        if name == "direct_opt.extract.cli":
            raise KeyboardInterrupt
        return real(name, *args)

    monkeypatch.setattr(cli.importlib, "import_module", interrupted)
    assert cli.main(["backends"]) == 0  # not imported for other commands
    capsys.readouterr()
    assert cli.main(["extract", "--model", "m", "--train", "t", "--val", "v", "--out", "o"]) == 130
    err = capsys.readouterr().err
    assert err == "direct-opt: interrupted (Ctrl-C); nothing was written for the unfinished step.\n"
