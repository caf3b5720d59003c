"""Class 4 (and 5) of issue 17: errors before work, exit code 2, no traceback.

Every ``direct-opt`` command runs one validation pass over all of its arguments before any
work.  This test runs every command with every invalid argument we know of and checks: exit
code 2, exactly one line ``direct-opt: error: ...`` on stderr naming the flag, no traceback,
nothing written, under a second of CPU time, and no work started (the functions that do the
work are replaced by tripwires).  Extract's model/text/device checks belong to its own tests.
"""

from __future__ import annotations

import io
import os
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from direct_opt.cli import main

from . import _lib

N = 40


class WorkStarted(AssertionError):
    pass


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_validation")
    stats = _lib.random_stats(n=N, seed=3).save(root / "stats")
    (root / "a_file").write_text("x")
    (root / "a_dir").mkdir()
    (root / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(root / "fifo")
    (root / "target.json").write_text("keep")
    (root / "link.json").symlink_to(root / "target.json")
    (root / "train.txt").write_text("a\nb\n")
    ro = root / "read_only"
    ro.mkdir()
    return {"root": root, "stats": str(stats), "file": str(root / "a_file"), "dir": str(root / "a_dir"),
            "fifo": str(root / "fifo"), "link": str(root / "link.json"), "train": str(root / "train.txt"),
            "ro": ro}


@pytest.fixture(autouse=True)
def tripwires(monkeypatch):
    """Any of these running means the command started working before rejecting its arguments."""
    def trip(*a, **k):
        raise WorkStarted("work started before the arguments were validated")

    import direct_opt.cli
    import direct_opt.demo
    import direct_opt.evaluate.cli
    import direct_opt.extract.hf

    monkeypatch.setattr(direct_opt.cli, "load_problem", trip)
    monkeypatch.setattr(direct_opt.demo, "run_demo", trip)
    monkeypatch.setattr(direct_opt.evaluate.cli, "run_config", trip)
    monkeypatch.setattr(direct_opt.extract.hf, "load_causal_lm", trip)
    import direct_opt.schedule.cli

    monkeypatch.setattr(direct_opt.schedule.cli, "_load_all_curves", trip)


def _cases(e):
    S = ["solve", "--stats", e["stats"], "-k", "5"]
    C = ["compare", "--stats", e["stats"], "-k", "5", "--backends", "greedy"]
    D = ["demo", "--quick", "--quiet"]
    V = ["evaluate", "--quick", "--no-progress", "--no-plot"]
    X = ["extract", "--model", "gpt2", "--train", e["train"], "--val", e["train"]]
    out = str(e["root"] / "new_out")
    bad_out = [("--out", ""), ("--out", "a\x00b"), ("--out", "/dev/null"), ("--out", e["fifo"]), ("--out", e["link"]),
               ("--out", e["dir"]), ("--out", e["file"] + "/below_a_file.json")]
    cases = []
    for base in (S, C):
        cmd = base[0]
        cases += [(f"{cmd} {f} {v!r}", base + [f, v], f) for f, v in bad_out]
        cases += [
            (f"{cmd} missing stats", [cmd, "--stats", str(e["root"] / "nope"), "-k", "5"], "--stats"),
            (f"{cmd} stats is a file", [cmd, "--stats", e["file"], "-k", "5"], "--stats"),
            (f"{cmd} NUL in stats", [cmd, "--stats", e["stats"] + "\x00", "-k", "5"], "--stats"),
            (f"{cmd} k > N", base[:3] + ["-k", str(N + 1)], "-k"),
            (f"{cmd} k = 0", base[:3] + ["-k", "0"], "-k"),
            (f"{cmd} tau-rel 0", base + ["--tau-rel", "0"], "--tau-rel"),
            (f"{cmd} tau-rel -1", base + ["--tau-rel", "-1"], "--tau-rel"),
            (f"{cmd} tau -1", base + ["--tau", "-1"], "--tau"),
            (f"{cmd} tau nan", base + ["--tau", "nan"], "--tau"),
            (f"{cmd} tol -1", base + ["--tol", "-1"], "--tol"),
            (f"{cmd} time-limit 0", base + ["--time-limit", "0"], "--time-limit"),
            (f"{cmd} time-limit -1", base + ["--time-limit", "-1"], "--time-limit"),
            (f"{cmd} seed -1", base + ["--seed", "-1"], "--seed"),
            (f"{cmd} max-iter 0", base + ["--max-iter", "0"], "--max-iter"),
        ]
    cases += [
        ("solve unknown backend", S + ["--backend", "nope"], "nope"),
        ("solve bad device", S + ["--device", "nonsense"], "--device"),
        ("compare unknown backend", C[:5] + ["--backends", "greedy,nope"], "nope"),
        ("compare empty backends", C[:5] + ["--backends", ","], "--backends"),
        ("compare duplicate backends", C[:5] + ["--backends", "greedy,greedy"], "greedy"),
        ("compare --plot ''", C + ["--plot", ""], "--plot"),
        ("compare --plot -", C + ["--plot", "-"], "--plot"),
        ("compare --plot fifo", C + ["--plot", e["fifo"]], "--plot"),
        ("compare --plot dir", C + ["--plot", e["dir"]], "--plot"),
        ("demo --out file", D + ["--out", e["file"]], "--out"),
        ("demo --out ''", D + ["--out", ""], "--out"),
        ("demo --out read-only", D + ["--out", str(e["ro"] / "demo")], "--out"),
        ("demo unknown backend", D + ["--backends", "nope"], "nope"),
        ("demo seed -1", D + ["--seed", "-1"], "--seed"),
        ("demo n-seeds 0", D + ["--n-seeds", "0"], "--n-seeds"),
        ("evaluate --selectors nope", V + ["--selectors", "nope"], "nope"),
        ("evaluate bad selector option", V + ["--selectors", "direct:nonsense=1"], "nonsense"),
        ("evaluate -k 0", V + ["-k", "0"], "-k"),
        ("evaluate -k -3", V + ["-k", "-3"], "-k"),
        ("evaluate -k > n-pool", V + ["-k", "50", "--n-pool", "10"], "-k"),
        ("evaluate seeds", V + ["--seeds", "a,b"], "seeds"),
        ("evaluate --out file", V + ["--out", e["file"]], "--out"),
        ("evaluate --out read-only", V + ["--out", str(e["ro"] / "ev")], "--out"),
        ("evaluate --lr 0", V + ["--lr", "0"], "--lr"),
        ("evaluate --n-pool 0", V + ["--n-pool", "0"], "--n-pool"),
        ("evaluate --pretrain-steps -1", V + ["--pretrain-steps", "-1"], "--pretrain-steps"),
        ("evaluate --anneal-steps 0", V + ["--anneal-steps", "0"], "steps"),
        ("evaluate --k-sketch 0", V + ["--k-sketch", "0"], "k_sketch"),
        ("evaluate --projector nope", V + ["--projector", "nope"], "nope"),
        ("evaluate --config missing", V + ["--config", str(e["root"] / "none.json")], "--config"),
        ("evaluate --config not json", V + ["--config", e["file"]], "config"),
        ("extract --train missing", X[:3] + ["--train", "nope.txt", "--val", e["train"], "--out", out], "--train"),
        ("extract --val missing", X[:5] + ["--val", "nope.txt", "--out", out], "--val"),
        ("extract --out file", X + ["--out", e["file"]], "--out"),
        ("extract --out ''", X + ["--out", ""], "--out"),
        ("extract --out read-only", X + ["--out", str(e["ro"] / "x")], "--out"),
        ("extract --k-sketch 0", X + ["--out", out, "--k-sketch", "0"], "--k-sketch"),
        ("extract --batch-size -1", X + ["--out", out, "--batch-size", "-1"], "--batch-size"),
        ("extract --elbow-energy 2", X + ["--out", out, "--elbow-energy", "2"], "--elbow-energy"),
        ("extract --elbow-energy nan", X + ["--out", out, "--elbow-energy", "nan"], "--elbow-energy"),
        ("extract --seed -1", X + ["--out", out, "--seed", "-1"], "--seed"),
        ("extract --projector nope", X + ["--out", out, "--projector", "nope"], "--projector"),
        ("schedule fit --curves missing", ["schedule", "fit", "--curves", "nope.csv"], "--curves"),
        ("schedule fit --out /dev/null", ["schedule", "fit", "--curves", e["train"], "--out", "/dev/null"], "--out"),
        ("schedule fit --plot fifo", ["schedule", "fit", "--curves", e["train"], "--plot", e["fifo"]], "--plot"),
        ("schedule fit --bootstrap -1", ["schedule", "fit", "--curves", e["train"], "--bootstrap", "-1"], "--bootstrap"),
        ("schedule predict --law missing", ["schedule", "predict", "--law", "nope.json"], "--law"),
        ("schedule optimize --final-lr -1", ["schedule", "optimize", "--law", e["train"], "--total-steps", "10",
                                             "--final-lr", "-1"], "--final-lr"),
        ("schedule collect --out file", ["schedule", "collect", "--out", e["file"]], "--out"),
    ]
    return cases


def test_every_command_rejects_every_bad_argument_before_any_work(env, monkeypatch):
    ro = env["ro"]
    os.chmod(ro, 0o500)
    if os.access(ro, os.W_OK):  # root ignores permission bits: make the kernel refuse instead
        import direct_opt.output as output

        real = output.tempfile.mkstemp

        def refusing(*a, dir=None, **k):
            if dir is not None and Path(dir).resolve() == ro.resolve():
                raise PermissionError(13, "Permission denied", str(dir))
            return real(*a, dir=dir, **k)

        monkeypatch.setattr(output.tempfile, "mkstemp", refusing)
    before = sorted(p.name for p in env["root"].iterdir())
    failures = []
    for name, argv, flag in _cases(env):
        out, err = io.StringIO(), io.StringIO()
        t0 = time.process_time()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(argv)
        cpu = time.process_time() - t0
        lines = err.getvalue().strip().splitlines()
        ok = (code == 2 and len(lines) == 1 and lines[0].startswith("direct-opt: error: ")
              and "Traceback" not in out.getvalue() + err.getvalue()
              and flag.lower().lstrip("-").replace("-", "_") in lines[0].lower().replace("-", "_")
              and cpu < 1.0)
        if not ok:
            failures.append(f"{name}: exit {code}, {cpu:.2f}s CPU, stderr {err.getvalue()!r}")
    assert not failures, "\n".join(failures)
    assert sorted(p.name for p in env["root"].iterdir()) == before  # nothing was written
    assert (env["root"] / "target.json").read_text() == "keep" and Path(env["link"]).is_symlink()
    assert Path(env["fifo"]).is_fifo()


def test_real_process_exit_code_2_and_one_line(env):
    """The console entry point itself (interpreter exit path, not main() in-process)."""
    import subprocess
    import sys

    for argv in (["solve", "--stats", env["stats"], "-k", "5", "--out", env["fifo"]],
                 ["compare", "--stats", env["stats"], "-k", "5", "--time-limit", "0"]):
        r = subprocess.run([sys.executable, "-m", "direct_opt.cli", *argv], capture_output=True, text=True,
                           env=_lib.child_env(), timeout=120)
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("direct-opt: error: ") and not r.stdout
