"""What a resumed extraction may reuse (issue 6, gaps closed after the first pass).

* Pool shards carry a SHA-256 record written after them: a shard changed on disk since
  (same shape, flipped bytes), truncated, or without a valid record is recomputed with a
  warning naming it -- never reused silently -- and the resumed stats stay byte-identical.
* A corrupt ``curvature/done.json`` or curvature ``.npy`` is an ExtractionError naming the
  file and what to delete, not a raw exception and not silently used.
* Two processes taking over the same stale lock at the same instant: only one gets it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from direct_opt import GradientStats
from direct_opt.errors import ExtractionError, OutputLockedError
from direct_opt.extract import shards as shards_mod
from direct_opt.extract.shards import OutputDir

from . import _lib


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    ref = tmp_path_factory.mktemp("integrity_ref") / "run"
    _lib.extract(str(ref))
    return ref


def flip_last_byte(p: Path) -> None:
    """Same size, same header, one data byte changed (bit rot; the shape is still right)."""
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0x5A
    p.write_bytes(bytes(raw))


# ------------------------------------------------------------------ shards
def test_damaged_shards_are_recomputed_with_a_warning_and_resume_is_byte_identical(reference, tmp_path, caplog):
    run = tmp_path / "run"
    _lib.extract(str(run))
    shard = lambda b: run / "shards" / f"pool_{b:06d}.npy"  # noqa: E731
    record = lambda b: run / "shard_sha256" / f"pool_{b:06d}.json"  # noqa: E731
    assert sorted(p.name for p in (run / "shard_sha256").iterdir()) == [
        f"pool_{b:06d}.json" for b in range(_lib.N_SHARDS)]
    assert json.loads(record(0).read_text())["shape"] == [_lib.BATCH, 2 + _lib.K_SKETCH]
    flip_last_byte(shard(1))                                        # bit rot, shape intact
    assert np.load(shard(1), allow_pickle=False).shape == (_lib.BATCH, 2 + _lib.K_SKETCH)
    shard(3).write_bytes(shard(3).read_bytes()[:100])               # truncated
    record(5).unlink()                                              # killed before its record was written
    record(7).write_text("{not json")                               # garbage record
    damaged = {1: "does not match the SHA-256", 3: "does not match the SHA-256",
               5: "has no valid checksum record", 7: "has no valid checksum record"}
    stamps = {b: shard(b).stat().st_mtime_ns for b in range(_lib.N_SHARDS) if b not in damaged}
    with caplog.at_level(logging.WARNING, logger="direct_opt.extract"):
        st = _lib.extract(str(run))
    warned = {r.getMessage() for r in caplog.records if r.name == "direct_opt.extract"}
    for b, why in damaged.items():
        assert any(f"recomputing pool batch {b}: {shard(b)} {why}" in m for m in warned), (b, warned)
    assert len(warned) == len(damaged)
    # the damaged shards were rewritten with the right bytes, the intact ones were not touched
    assert _lib.npy_bytes(run / "shards") == _lib.npy_bytes(reference / "shards")
    assert all(shard(b).stat().st_mtime_ns == t for b, t in stamps.items())
    assert st.checksum() == GradientStats.load(reference / "stats").checksum()
    assert _lib.npy_bytes(run / "stats") == _lib.npy_bytes(reference / "stats")
    # and now every shard is intact again: a further resume warns about nothing
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="direct_opt.extract"):
        _lib.extract(str(run))
    assert not [r for r in caplog.records if r.name == "direct_opt.extract"]


def test_load_shard_refuses_a_changed_shard_naming_it(tmp_path):
    """The strict reader (used when ranks read each other's shards) raises instead of reusing."""
    out = OutputDir(tmp_path / "run", {"config": {}})
    with out:
        arr = np.arange(12, dtype=np.float32).reshape(3, 4)
        out.save_shard(0, arr)
        np.testing.assert_array_equal(out.load_shard(0, 3, 4), arr)
        flip_last_byte(out.shard_path(0))
        with pytest.raises(ExtractionError, match=r"pool_000000\.npy does not match the SHA-256.*re-run"):
            out.load_shard(0, 3, 4)
        assert out.reuse_shard(0, 3, 4) is None and out.reuse_shard(1, 3, 4) is None


# --------------------------------------------------------------- curvature
CURVATURE_DAMAGE = {
    "done.json not JSON": ("done.json", lambda p: p.write_text('{"arrays": [')),
    "done.json a list": ("done.json", lambda p: p.write_text("[1, 2]")),
    "flipped byte": ("basis.npy", flip_last_byte),
    "truncated": ("eigvals.npy", lambda p: p.write_bytes(p.read_bytes()[:60])),
    "missing": ("val_mean.npy", lambda p: p.unlink()),
}


@pytest.mark.parametrize("case", sorted(CURVATURE_DAMAGE))
def test_corrupt_curvature_is_a_specific_error_naming_the_file(tmp_path, case):
    name, damage = CURVATURE_DAMAGE[case]
    out = OutputDir(tmp_path / "run", {"config": {"curvature": "fisher"}})
    with out:
        rng = np.random.default_rng(0)
        arrays = {"eigvals": rng.random(4), "basis": rng.random((4, 4)).astype(np.float32),
                  "val_mean": rng.random(4), "val_losses": rng.random(3).astype(np.float32)}
        out.save_curvature(arrays, {"kind": "fisher", "k": 4, "m": 3})
        back, info = out.load_curvature()
        assert info == {"kind": "fisher", "k": 4, "m": 3}  # the provenance, without the bookkeeping
        assert all(np.array_equal(back[k], v) for k, v in arrays.items())
        damage(out.path / "curvature" / name)
        with pytest.raises(ExtractionError) as err:
            out.load_curvature()
    msg = str(err.value)
    assert str(out.path / "curvature" / name) in msg and "corrupted" in msg
    assert f"Delete {out.path / 'curvature'} and re-run with the same arguments" in msg


def test_corrupt_hessian_curvature_says_to_recompute_the_shards_too(tmp_path):
    out = OutputDir(tmp_path / "run", {"config": {"curvature": "hessian-lanczos"}})
    with out:
        out.save_curvature({"eigvals": np.ones(3)}, {"kind": "hessian-lanczos"})
        flip_last_byte(out.path / "curvature" / "eigvals.npy")
        with pytest.raises(ExtractionError, match=r"eigvals\.npy is corrupted.*and .*shards \(the pool sketches"):
            out.load_curvature()


def test_extraction_with_a_corrupt_curvature_file_stops_with_the_named_error(tmp_path):
    run = tmp_path / "run"
    _lib.extract(str(run))
    flip_last_byte(run / "curvature" / "basis.npy")
    with pytest.raises(ExtractionError, match=r"basis\.npy is corrupted \(its SHA-256 differs"):
        _lib.extract(str(run))
    assert not (run / ".lock").exists()


# --------------------------------------------------------------- stale lock race
def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_two_simultaneous_takeovers_of_a_stale_lock_give_one_owner(tmp_path, monkeypatch):
    """Deterministic interleaving of the race: B has seen the dead pid and is about to take the
    lock over when A arrives; without mutual exclusion A takes it over, then B deletes A's
    lock and creates its own, and both run.  (Two threads stand in for two processes: each
    OutputDir opens its own descriptor, and flocks on separate descriptors exclude each other.)"""
    run = tmp_path / "run"
    run.mkdir()
    dead = dead_pid()
    (run / ".lock").write_text(str(dead))
    real_alive = shards_mod._pid_alive
    b_checking, a_finished = threading.Event(), threading.Event()

    def alive(pid: int) -> bool:
        if pid == dead and threading.current_thread().name == "B":
            b_checking.set()
            a_finished.wait(1.5)  # A gets to run here unless B holds the takeover guard
        return real_alive(pid)

    monkeypatch.setattr(shards_mod, "_pid_alive", alive)
    results: dict[str, str] = {}

    def take(name: str) -> None:
        try:
            OutputDir(run, {}).acquire()
            results[name] = "owner"
        except OutputLockedError as exc:
            results[name] = f"refused: {exc}"
        finally:
            if name == "A":
                a_finished.set()

    b = threading.Thread(target=take, args=("B",), name="B")
    b.start()
    assert b_checking.wait(10)
    a = threading.Thread(target=take, args=("A",), name="A")
    a.start()
    a.join(10)
    b.join(10)
    assert sorted(results) == ["A", "B"]
    assert [v for v in results.values()].count("owner") == 1, results
    assert results["B"] == "owner" and "locked by process" in results["A"]
    assert (run / ".lock").read_text() == str(os.getpid())
    assert os.listdir(run) == [".lock"]  # the guard leaves no file behind


RACER = r"""
import json, sys, time
from direct_opt.extract import shards
from direct_opt.errors import OutputLockedError
run, dead, start, me = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
real = shards._pid_alive
def slow(pid):  # widen the window between reading the dead pid and taking the lock over
    if pid == dead:
        time.sleep(0.5)
    return real(pid)
shards._pid_alive = slow
time.sleep(max(0.0, start - time.time()))
try:
    shards.OutputDir(run, {}).acquire()
    got = {"owner": True}
except OutputLockedError as exc:
    got = {"owner": False, "error": str(exc)}
open(f"{run}.tried{me}", "w").close()
print(json.dumps(got), flush=True)
deadline = time.time() + 60
while got["owner"] and time.time() < deadline and not all(
        __import__("os").path.exists(f"{run}.tried{i}") for i in "01"):
    time.sleep(0.02)  # an owner holds the lock (stays alive) until the other one has tried
"""


def test_two_real_processes_restarting_at_once_give_one_owner(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(str(dead_pid()))
    start = __import__("time").time() + 2.0  # both children import first, then start together
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(run), (run / ".lock").read_text(), str(start), me],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_lib.child_env())
             for me in "01"]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    got = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert sorted(g["owner"] for g in got) == [False, True], got
    assert "locked by process" in next(g["error"] for g in got if not g["owner"])
