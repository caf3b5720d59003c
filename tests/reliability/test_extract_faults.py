"""Extraction under faults (issue 6, "Faults"): nothing lost, nothing silently wrong.

* SIGKILL at several random points (a real child process each time, the same arguments),
  then a restart with the same arguments: the final stats -- every .npy byte and the
  manifest -- are identical to an uninterrupted run, and every completed shard stays valid.
* A second writer on the same output directory gets OutputLockedError naming the lock.
* Disk full (ENOSPC in-process; EFBIG from a real RLIMIT_FSIZE in a child), an unwritable or
  impossible output directory: an OSError naming the file and what to do; completed shards
  stay valid and byte-identical; the lock is released; a re-run resumes to identical stats.
"""

from __future__ import annotations

import errno
import json
import os
import random
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from direct_opt import GradientStats
from direct_opt.errors import OutputLockedError, StatsFormatError

from . import _lib

SEED = int(os.environ.get("DIRECT_OPT_RELIABILITY_SEED", "0"))  # picks the kill points


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run (in this process)."""
    ref = tmp_path_factory.mktemp("reference") / "run"
    _lib.extract(str(ref))
    return ref


def shard_names(d: Path) -> list[str]:
    return sorted(p.name for p in (d / "shards").glob("pool_*.npy"))


def assert_completed_shards_valid(run: Path, ref: Path) -> int:
    """Every pool_*.npy present loads without pickle with the right shape and equals the reference."""
    names = shard_names(run)
    for name in names:
        arr = np.load(run / "shards" / name, allow_pickle=False)
        assert arr.shape == (_lib.BATCH, 2 + _lib.K_SKETCH) and arr.dtype == np.float32
        assert (run / "shards" / name).read_bytes() == (ref / "shards" / name).read_bytes(), name
    return len(names)


def assert_identical_to_reference(run: Path, ref: Path) -> None:
    assert _lib.npy_bytes(run / "stats") == _lib.npy_bytes(ref / "stats")
    assert _lib.npy_bytes(run / "shards") == _lib.npy_bytes(ref / "shards")
    assert _lib.npy_bytes(run / "curvature") == _lib.npy_bytes(ref / "curvature")
    assert _lib.manifest_without_out_dir(run / "stats") == _lib.manifest_without_out_dir(ref / "stats")
    assert GradientStats.load(run / "stats").checksum() == GradientStats.load(ref / "stats").checksum()
    assert json.loads((run / "progress.json").read_text())["done"] is True
    assert not (run / ".lock").exists()


# ------------------------------------------------------------------ SIGKILL and resume
@pytest.fixture(scope="module")
def killed_run(reference, tmp_path_factory) -> dict:
    """One output directory killed four times by SIGKILL, observed after each kill, then resumed.

    Kill points (seeded, DIRECT_OPT_RELIABILITY_SEED): (1) in the validation pass, after one
    curvature array; (2) after a random pool shard -- while paused there a second writer
    tries the same directory; (3) at a random time while pool batches are being computed
    and written; (4) in the final stats save, after a random number of its arrays.
    """
    rng = random.Random(SEED)
    run = tmp_path_factory.mktemp("killed") / "run"
    obs: dict = {"kills": []}

    def kill_when_paused(pause: str) -> subprocess.Popen:
        proc = _lib.spawn_worker(run, "--pause", pause)
        _lib.wait_for(proc, (run / ".paused").exists, what=f"worker paused at {pause}")
        return proc

    def after_kill(label: str) -> None:
        (run / ".paused").unlink(missing_ok=True)
        obs["kills"].append({"point": label, "shards": assert_completed_shards_valid(run, reference),
                             "curvature_done": (run / "curvature" / "done.json").is_file(),
                             "stale_lock": (run / ".lock").is_file()})
        with pytest.raises(StatsFormatError):  # an unfinished save never loads as valid stats
            GradientStats.load(run / "stats")

    # (1) validation pass: eigvals.npy and basis.npy written, done.json not yet
    _lib.sigkill(kill_when_paused("curvature/basis:1"))
    after_kill("validation pass, after curvature/basis.npy")
    # (2) after shard c; a second writer is refused while the first one holds the lock
    c = rng.randint(2, 4)
    proc = kill_when_paused(f"shards/pool_:{c}")
    with pytest.raises(OutputLockedError) as err:
        _lib.extract(str(run))
    obs["second_writer"] = {"message": str(err.value), "pid": proc.pid,
                            "shards_while_locked": assert_completed_shards_valid(run, reference)}
    _lib.sigkill(proc)
    after_kill(f"after shard {c}")
    # (3) a random time while the pool pass writes shards (0.1 s per sample read: ~0.4 s per shard)
    before = len(shard_names(run))
    proc = _lib.spawn_worker(run, "--slow", "0.1")
    _lib.wait_for(proc, lambda: len(shard_names(run)) > before, what="a new shard")
    time.sleep(rng.uniform(0.0, 0.6))
    assert proc.poll() is None, "the slow worker finished before it could be killed"
    _lib.sigkill(proc)
    after_kill("random time in the pool pass")
    # (4) final stats save: some arrays written into the partial copy .stats.PID.*.tmp, no stats/ yet
    s = rng.randint(1, 6)
    _lib.sigkill(kill_when_paused(f".stats.:{s}"))
    after_kill(f"final save, after {s} stats array(s)")
    obs["stats_files_before_resume"] = sorted(p.name for p in run.glob(".stats.*.tmp/*.npy"))
    obs["stats_dir_before_resume"] = (run / "stats").exists()
    # restart with the same arguments (here, in-process; the lock of the killed child is stale)
    obs["checksum"] = _lib.extract(str(run)).checksum()
    obs["partial_copies_after_resume"] = sorted(p.name for p in run.glob(".stats.*.tmp"))
    obs["run"] = run
    return obs


def test_sigkill_at_random_points_then_resume_is_byte_identical(killed_run, reference):
    assert [k["point"] for k in killed_run["kills"]][0].startswith("validation pass")
    assert killed_run["checksum"] == GradientStats.load(reference / "stats").checksum()
    assert_identical_to_reference(killed_run["run"], reference)


def test_each_kill_left_only_valid_files_and_a_stale_lock(killed_run):
    kills = killed_run["kills"]
    assert len(kills) == 4
    assert not kills[0]["curvature_done"] and kills[0]["shards"] == 0  # killed inside the validation pass
    assert all(k["curvature_done"] for k in kills[1:])
    counts = [k["shards"] for k in kills]
    assert counts == sorted(counts) and 2 <= counts[1] <= 4 and counts[3] == _lib.N_SHARDS  # progress kept
    assert counts[2] > counts[1]  # the random-time kill came after at least one more shard
    assert all(k["stale_lock"] for k in kills)  # SIGKILL leaves the lock; the restart took it over
    assert 1 <= len(killed_run["stats_files_before_resume"]) <= 6 and not killed_run["stats_dir_before_resume"]
    assert killed_run["partial_copies_after_resume"] == []  # the dead save's partial copy was removed


def test_second_writer_is_refused_with_a_lock_error(killed_run):
    sw = killed_run["second_writer"]
    assert f"locked by process {sw['pid']}" in sw["message"] and ".lock" in sw["message"]
    assert sw["shards_while_locked"] >= 2  # the first writer's completed shards were untouched


# ------------------------------------------------------------------ disk full, unwritable
def test_disk_full_midway_names_the_file_keeps_completed_shards_and_resumes(reference, tmp_path, monkeypatch):
    """ENOSPC while writing shard 5 (raised by fsync, where a full disk often reports it)."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to see which file is being written")
    run = tmp_path / "run"
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if "pool_000005.npy" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError) as err:
        _lib.extract(str(run))
    assert err.value.errno == errno.ENOSPC
    msg = str(err.value)
    assert str(run / "shards" / "pool_000005.npy") in msg and "No space left on device" in msg
    assert "free disk space" in msg and "resumes" in msg
    assert assert_completed_shards_valid(run, reference) == 5
    assert not list((run / "shards").glob(".*.tmp"))  # the half-written temp file was removed
    assert not (run / ".lock").exists()  # the lock was released
    monkeypatch.setattr(os, "fsync", real_fsync)  # disk space freed: re-run with the same arguments
    _lib.extract(str(run))
    assert_identical_to_reference(run, reference)


def test_file_size_limit_in_a_real_process(reference, tmp_path):
    """A real kernel write failure (EFBIG from RLIMIT_FSIZE) in a child, at the 4th shard."""
    run = tmp_path / "run"
    proc = _lib.spawn_worker(run, "--fsize-at", "shards/pool_:4")
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 3, (out, err[-3000:])
    report = json.loads(out.strip().splitlines()[-1])
    assert report["error"] == "OSError" and report["errno"] == errno.EFBIG, report
    assert str(run / "shards" / "pool_000003.npy") in report["message"] and "File too large" in report["message"]
    assert assert_completed_shards_valid(run, reference) == 3
    assert not list((run / "shards").glob(".*.tmp")) and not (run / ".lock").exists()
    _lib.extract(str(run))
    assert_identical_to_reference(run, reference)


def test_output_dir_that_cannot_exist(tmp_path):
    (tmp_path / "a_file").write_text("x")
    bad = tmp_path / "a_file" / "run"
    with pytest.raises(OSError) as err:
        _lib.extract(str(bad))
    assert f"could not create the output directory {bad}" in str(err.value) and "Not a directory" in str(err.value)


def test_unwritable_output_dir(tmp_path, monkeypatch):
    """A read-only directory: the lock cannot be created; nothing is written.

    Root ignores permission bits, so under root the kernel's answer (EACCES for every file
    created inside the directory) is simulated by refusing os.open / mkstemp there.
    """
    run = tmp_path / "run"
    run.mkdir()
    os.chmod(run, 0o555)
    if os.geteuid() == 0:
        real_open = os.open

        def deny(path, flags, *args, **kw):
            if str(path).startswith(str(run)) and flags & os.O_CREAT:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real_open(path, flags, *args, **kw)

        monkeypatch.setattr(os, "open", deny)
    try:
        with pytest.raises(PermissionError) as err:
            _lib.extract(str(run))
    finally:
        monkeypatch.undo()
        os.chmod(run, 0o755)
    msg = str(err.value)
    assert f"could not create the lock file {run / '.lock'}" in msg
    assert "Permission denied" in msg and "fix permissions" in msg
    assert os.listdir(run) == []


def test_selection_json_write_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    """`direct-opt solve --out` writes atomically: a failing write leaves no truncated JSON behind."""
    from .test_fuzz_cli import run_main

    stats = _lib.random_stats(n=80).save(tmp_path / "stats")
    out = tmp_path / "sel.json"
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    code, stdout, stderr = run_main(["solve", "--stats", str(stats), "-k", "5", "--out", str(out)])
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert code == 1 and f"could not write {out}" in stderr and "No space left on device" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".sel.json*"))


def test_atomically_written_files_get_the_usual_permissions(reference, tmp_path):
    """Temp-file-and-rename must not leave mkstemp's private 0600 mode (others could not read shared stats)."""
    umask = os.umask(0o022)
    os.umask(umask)
    files = [p for p in reference.rglob("*") if p.is_file() and p.name != ".lock"]
    files += list(_lib.random_stats(n=20).save(tmp_path / "stats").iterdir())
    assert len(files) > 20
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o666 & ~umask)}
