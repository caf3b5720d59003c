"""Hypothesis fuzzing of the ``direct-opt`` command line (issue 6).

Random arguments (hostile numbers, NaN/Inf, huge/negative K and tau, unknown backends,
bad paths, corrupted stats directories, junk tokens) never produce a traceback: a failure
is exactly one line ``direct-opt: error: ...`` on stderr and a non-zero exit code (2 for
bad arguments, 1 for failures); a success writes a valid, feasible selection.  The fuzzer
calls ``direct_opt.cli.main(argv)`` in-process for speed; two real subprocesses check the
same through the interpreter's own exit path.
"""

from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, strategies as st

from direct_opt import GradientStats
from direct_opt.cli import main
from direct_opt.solvers import available_backends

from . import _lib

N = 60


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, str]:
    """Stats directories and paths the fuzzer picks from (valid, hostile, absent)."""
    root = tmp_path_factory.mktemp("cli_fuzz")
    valid = _lib.random_stats(n=N, seed=5).save(root / "valid")
    rng = np.random.default_rng(0)
    G = rng.standard_normal((4, N)).astype(np.float32)
    G[1, 3] = np.inf
    GradientStats(G_flat=G, a_stiff=rng.random(N), validate=False).save(root / "inf_inside")
    bad_json = root / "bad_json"
    shutil.copytree(valid, bad_json)
    (bad_json / "manifest.json").write_text("{not json")
    version = root / "version9"
    shutil.copytree(valid, version)
    m = json.loads((version / "manifest.json").read_text())
    m["format_version"] = 9
    (version / "manifest.json").write_text(json.dumps(m))
    (root / "empty").mkdir()
    (root / "a_file").write_text("x")
    (root / "outputs").mkdir()
    return {"valid": str(valid), "inf_inside": str(root / "inf_inside"), "bad_json": str(bad_json),
            "version9": str(version), "empty": str(root / "empty"), "a_file": str(root / "a_file"),
            "missing": str(root / "missing"), "root": str(root)}


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_clean_failure_or_success(code, out: str, err: str) -> None:
    assert isinstance(code, int) and code in (0, 1, 2), code
    assert "Traceback" not in out + err
    if code != 0:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("direct-opt: error: ") and len(lines[0]) > len("direct-opt: error: ") + 3


_HOSTILE = ["nan", "NaN", "inf", "-inf", "1e400", "-1e400", "-0", "0", "", " ", "0x10", "1_000", "½", "١٢", "3.0",
            "True", "None", "99999999999999999999999", "-99999999999999999999999", "1e-320", "--", "\x00", "é"]
_numbers = st.one_of(st.integers(-(10**25), 10**25).map(str), st.floats().map(repr), st.sampled_from(_HOSTILE))
_small_ints = st.integers(-3, N + 3).map(str)


@st.composite
def solve_argv(draw, dirs: dict[str, str]) -> list[str]:
    """A solve command line: each option valid or, for 0-2 of them, hostile (or left out)."""
    out = lambda name: str(Path(dirs["root"]) / name)  # noqa: E731
    options = {  # flag: (valid values, hostile values); None = a flag without a value
        "--stats": (st.just(dirs["valid"]), st.sampled_from([dirs[k] for k in (
            "inf_inside", "bad_json", "version9", "empty", "a_file", "missing")] + ["", "\x00x", None])),
        "-k": (st.integers(1, N).map(str), st.one_of(st.sampled_from(["0", "-1", str(N + 1), None]), _numbers)),
        "--tau-rel": (st.sampled_from(["0.1", "2", "50"]), st.one_of(st.sampled_from(["1e-12", "-1"]), _numbers)),
        "--tau": (st.sampled_from(["10", "1e308"]), st.one_of(st.sampled_from(["0", "1e-12", "-1"]), _numbers)),
        "--backend": (st.sampled_from(available_backends()), st.sampled_from(["nope", "", "SCA-EXACT", "sca_exact"])),
        "--max-iter": (st.integers(1, 30).map(str), st.sampled_from(_HOSTILE + ["-2"])),
        "--tol": (st.sampled_from(["1e-4", "0", "1e9"]), st.one_of(st.just("-1"), _numbers)),
        "--seed": (st.integers(0, 5).map(str), st.one_of(st.just("-3"), _numbers)),
        "--time-limit": (st.sampled_from(["0.5", "1"]), st.one_of(st.floats(-1, 0).map(repr), st.sampled_from(_HOSTILE))),
        "--out": (st.sampled_from(["sel.json", "new/sub/sel.json"]).map(out),
                  st.sampled_from(["", ".", "a_file/x.json", "outputs"]).map(lambda v: out(v) if v else v)),
        "--mmap": (None, None), "--no-local-search": (None, None), "--no-verify": (None, None),
    }
    required = ("--stats", "-k")
    chosen = [f for f in options if f in required or draw(st.integers(0, 3)) == 0]
    faulty = set(draw(st.lists(st.sampled_from(chosen), max_size=2, unique=True))) if draw(st.integers(0, 2)) else set()
    groups: list[list[str]] = []
    for flag in chosen:
        valid, hostile = options[flag]
        if valid is None:
            groups.append([flag])
            continue
        value = draw(hostile if flag in faulty else valid)
        groups.append([flag] if value is None else [flag, value])  # None: the value is missing
    if draw(st.integers(0, 7)) == 0:
        groups.append([draw(st.sampled_from(["--frobnicate", "-x", "extra", "--k", "--stats=", "-k="]))])
    groups = draw(st.permutations(groups))
    # a safety net against legitimately endless solves (--tol 0 with a huge --max-iter); a fuzzed
    # --time-limit later in the line overrides it
    return ["solve", "--time-limit", "1"] + [tok for g in groups for tok in g]


@given(data=st.data())
def test_solve_never_shows_a_traceback(dirs, data):
    argv = data.draw(solve_argv(dirs))
    code, out, err = run_main(argv)
    event(f"exit {code}")
    assert_clean_failure_or_success(code, out, err)
    if code == 0:
        assert "status=" in out and "feasible=True" in out
        written = [Path(v) for f, v in zip(argv, argv[1:]) if f == "--out" and v]
        if written and "selection written" in out:
            rec = json.loads(written[-1].read_text())
            idx = rec["result"]["indices"]
            assert rec["result"]["feasible"] and len(set(idx)) == len(idx) == rec["parameters"]["k"]


@given(cmd=st.sampled_from(["backends", "extract", "demo", "evaluate", "compare", "frobnicate", "", "SOLVE"]),
       junk=st.lists(st.one_of(st.text(st.characters(blacklist_characters="-", blacklist_categories=("Cs",)), max_size=5),
                               st.sampled_from(_HOSTILE)), max_size=3))
def test_other_commands_reject_bad_arguments_in_one_line(cmd, junk):
    """Every subcommand (heavy ones included) fails fast and cleanly on an unknown option."""
    code, out, err = run_main([cmd, *junk, "--no-such-option-xyz"])
    assert code == 2
    assert_clean_failure_or_success(code, out, err)


@pytest.mark.parametrize("argv, fragment", [
    (["solve", "--stats", "{inf_inside}", "-k", "5"], "G_flat contains NaN/Inf"),
    (["solve", "--stats", "{inf_inside}", "-k", "5", "--mmap", "--no-verify"], "G_flat contains NaN/Inf"),
    (["solve", "--stats", "{valid}", "-k", "5", "--tau", "0"], "infeasible: budget"),
    (["solve", "--stats", "{valid}", "-k", "99999999999999999999999"], "choose 1 <= K <= 60"),
    (["solve", "--stats", "{valid}", "-k", "-4"], "must be > 0"),
    (["solve", "--stats", "{valid}", "-k", "5", "--tau-rel", "inf"], "must be finite"),
    (["solve", "--stats", "{valid}", "-k", "5", "--tau", "-1"], "--tau must be >= 0"),
    (["solve", "--stats", "{valid}", "-k", "5", "--tau", "1", "--tau-rel", "1"], "not allowed with argument"),
    (["solve", "--stats", "{valid}", "-k", "5", "--time-limit", "-1"], "--time-limit must be > 0"),
    (["solve", "--stats", "{valid}", "-k", "5", "--seed", "-1"], "--seed must be >= 0"),
    (["solve", "--stats", "{valid}", "-k", "5", "--out", "{a_file}/x.json"], "a_file"),
    (["solve", "--stats", "{version9}", "-k", "5"], "format_version 9"),
    (["solve", "--stats", "{bad_json}", "-k", "5"], "not valid JSON"),
    (["solve", "--stats", "{empty}", "-k", "5"], "manifest.json is missing"),
])
def test_known_bad_inputs_name_the_problem(dirs, argv, fragment):
    code, out, err = run_main([a.format(**dirs) for a in argv])
    assert code in (1, 2)
    assert_clean_failure_or_success(code, out, err)
    assert fragment in err, err


@pytest.mark.parametrize("argv, code, fragment", [
    (["solve", "--stats", "{bad_json}", "-k", "5"], 1, "bad_json/manifest.json is not valid JSON"),
    (["solve", "--stats", "{valid}", "-k", "nan", "--tau", "inf"], 2, "expected an integer, got 'nan'"),
])
def test_real_process_exits_cleanly(dirs, argv, code, fragment):
    proc = _lib.run_cli(*[a.format(**dirs) for a in argv])
    assert proc.returncode == code, proc
    assert_clean_failure_or_success(proc.returncode, proc.stdout, proc.stderr)
    assert fragment in proc.stderr
