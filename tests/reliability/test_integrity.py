"""Classes 3 and 5 of issue 17: integrity claims are checked, internal exceptions get names.

* A manifest entry whose SHA-256 is missing, empty or not a digest cannot be verified: a
  verifying load refuses it, and a selection record says ``checksums_verified: true`` only
  when every file was verified.
* Metadata keys become file names: anything that could escape the directory or fail as a
  file name is refused when the stats are built, before anything is written.
* Hostile or degenerate input raises a named direct_opt error, never a bare Python one.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest

from direct_opt import GradientStats, SelectionProblem, available_backends, solve
from direct_opt.cli import main
from direct_opt.errors import DirectOptError, InvalidParameterError, StatsFormatError

from . import _lib


@pytest.mark.parametrize("damage", ["removed", "", None, "zz", "0" * 63, 12])
def test_an_unverifiable_checksum_is_refused_when_verifying(tmp_path, damage):
    d = _lib.random_stats(n=30, seed=0).save(tmp_path / "s")
    m = json.loads((d / "manifest.json").read_text())
    if damage == "removed":
        del m["arrays"]["a_stiff"]["sha256"]
    else:
        m["arrays"]["a_stiff"]["sha256"] = damage
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StatsFormatError, match="a_stiff.npy.*no valid SHA-256"):
        GradientStats.load(d)
    with pytest.raises(StatsFormatError):
        GradientStats.load(d, mmap=True)
    assert GradientStats.load(d, verify=False).checksums_verified is False
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        assert main(["solve", "--stats", str(d), "-k", "3", "--tau-rel", "1"]) == 1
    assert "no valid SHA-256" in err.getvalue()
    with redirect_stdout(io.StringIO()):
        assert main(["solve", "--stats", str(d), "-k", "3", "--tau-rel", "1", "--no-verify",
                     "--out", str(tmp_path / "sel.json")]) == 0
    assert json.loads((tmp_path / "sel.json").read_text())["stats"]["checksums_verified"] is False


def test_intact_stats_are_recorded_as_verified(tmp_path):
    d = _lib.random_stats(n=30, seed=0).save(tmp_path / "s")
    assert GradientStats.load(d).checksums_verified and GradientStats.load(d, mmap=True).checksums_verified
    with redirect_stdout(io.StringIO()):
        assert main(["solve", "--stats", str(d), "-k", "3", "--tau-rel", "1", "--out", str(tmp_path / "o.json")]) == 0
    assert json.loads((tmp_path / "o.json").read_text())["stats"]["checksums_verified"] is True


@pytest.mark.parametrize("key", ["x/../../escaped", "a/b", "..", "a..b", ".hidden", "", "a\x00b", "-x", "a\\b",
                                 "k" * 129, "tab\tkey", "naïve", 3])
def test_metadata_keys_that_cannot_be_file_names_are_refused_before_writing(tmp_path, key):
    with pytest.raises(InvalidParameterError):
        GradientStats(G_flat=np.ones((2, 4)), a_stiff=np.ones(4), metadata={key: np.arange(4)}).save(tmp_path / "s")
    assert list(tmp_path.iterdir()) == []


def test_ordinary_metadata_keys_round_trip(tmp_path):
    meta = {"doc_id": np.arange(4), "tokens.v2": np.ones(4), "Group-1": np.array(list("abcd"))}
    d = GradientStats(G_flat=np.ones((2, 4)), a_stiff=np.ones(4), metadata=meta).save(tmp_path / "s")
    back = GradientStats.load(d).metadata
    assert sorted(back) == sorted(meta) and all(np.array_equal(back[k], v) for k, v in meta.items())


def test_hostile_manifests_and_paths_raise_named_errors(tmp_path):
    d = _lib.random_stats(n=30, seed=0).save(tmp_path / "s")
    (d / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(StatsFormatError, match="nested too deeply"):
        GradientStats.load(d)
    with pytest.raises(StatsFormatError, match="NUL"):
        GradientStats.load(str(tmp_path / "s\x00x"))


def test_degenerate_problems_give_named_errors_or_valid_results_for_every_backend():
    rng = np.random.default_rng(0)
    G, a = rng.standard_normal((3, 20)), rng.random(20) + 0.1
    problems = {
        "r = 0": SelectionProblem(np.zeros((0, 20)), a, 4, tau=float(a.sum())),
        "a x 1e300": SelectionProblem(G, a * 1e300, 4, tau=float(np.sort(a)[:4].sum()) * 1.2e300),
        "a x 1e-300": SelectionProblem(G, a * 1e-300, 4, tau=float(np.sort(a)[:4].sum()) * 1.2e-300),
        "G x 1e150": SelectionProblem(G * 1e150, a, 4, tau=float(a.sum())),
        "G = 0": SelectionProblem(np.zeros((3, 20)), a, 4, tau=float(a.sum())),
        "a = 0, tau = 0": SelectionProblem(G, np.zeros(20), 4, tau=0.0),
    }
    for name, P in problems.items():
        for backend in available_backends():
            try:
                res = solve(P, backend=backend, max_iter=5)
            except DirectOptError:
                continue
            except Exception as exc:  # noqa: BLE001
                pytest.fail(f"{name} / {backend}: bare {type(exc).__name__}: {exc}")
            if res.feasible:
                x = np.zeros(20)
                x[res.indices] = 1.0
                assert P.is_feasible(x) and len(res.indices) == 4, (name, backend)
