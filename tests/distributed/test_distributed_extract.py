"""extract_stats on 2 gloo ranks gives the single-process stats bit for bit; resumable per shard."""

from __future__ import annotations

import os

import numpy as np

from direct_opt.extract.ranks import gather_batches, my_batches
from direct_opt.stats import GradientStats

from .dist_testlib import extract_small, launch


def test_round_robin_batches_and_serial_gather():
    assert my_batches(5, None) == [0, 1, 2, 3, 4]
    parts = {b: np.full((b + 1, 2), b, np.float32) for b in range(4)}
    table = gather_batches(parts, 4, None)
    assert table.shape == (10, 2) and table[:, 0].tolist() == [0, 1, 1, 2, 2, 2, 3, 3, 3, 3]


def test_two_ranks_in_memory_equal_one_process(tmp_path):
    ref = {"mem": extract_small(), "hessian": extract_small(curvature="hessian-lanczos")}
    launch(2, ["extract", str(tmp_path)])
    for name, st in ref.items():
        for rank in range(2):
            with np.load(tmp_path / f"{name}_rank{rank}.npz", allow_pickle=False) as got:
                assert sorted(got.files) == sorted(st.arrays())
                for key, arr in st.arrays().items():
                    np.testing.assert_array_equal(got[key], arr, err_msg=f"{name} rank {rank}: {key}")
            assert (tmp_path / f"{name}_checksum_rank{rank}.txt").read_text() == st.checksum(), (name, rank)
    for rank in range(2):
        assert "ranks [1] pass a different config" in (tmp_path / f"mismatch_rank{rank}.txt").read_text()


def test_two_ranks_shared_run_dir_equal_one_process_and_resume(tmp_path):
    ref = extract_small()
    run = tmp_path / "run"
    launch(2, ["extract", str(tmp_path), str(run)])
    shards = sorted((run / "shards").glob("pool_*.npy"))
    assert len(shards) == 10  # 37 samples in batches of 4, written by both ranks
    assert GradientStats.load(run / "stats").checksum() == ref.checksum()
    for rank in range(2):
        assert (tmp_path / f"run_checksum_rank{rank}.txt").read_text() == ref.checksum()
    assert not (run / ".lock").exists()
    # a crash after some shards: drop one shard of each rank and the final stats, relaunch
    stamp = {p.name: p.stat().st_mtime_ns for p in shards}
    for name in ("pool_000003.npy", "pool_000006.npy"):
        os.remove(run / "shards" / name)
    for f in (run / "stats").iterdir():
        f.unlink()
    (run / "stats").rmdir()
    launch(2, ["extract", str(tmp_path), str(run)])
    assert GradientStats.load(run / "stats").checksum() == ref.checksum()
    kept = {p.name: p.stat().st_mtime_ns for p in (run / "shards").glob("pool_*.npy")}
    assert all(kept[n] == t for n, t in stamp.items() if n not in ("pool_000003.npy", "pool_000006.npy"))
    assert (run / "shards" / "pool_000003.npy").exists() and (run / "shards" / "pool_000006.npy").exists()
