"""Out-of-core and device options of the single-process solvers (the scale path)."""

from __future__ import annotations

import numpy as np
import pytest

import direct_opt.linop as linop
from direct_opt import SelectionProblem, solve
from direct_opt.errors import InvalidParameterError
from direct_opt.linop import ColumnOperator

from .dist_testlib import instance


@pytest.mark.parametrize("backend", ["sca-exact", "frank-wolfe", "fw-block", "greedy"])
def test_memmap_float16_is_streamed_in_bounded_blocks(tmp_path, monkeypatch, backend):
    G, a, k, tau = instance(1200, 8)
    path = tmp_path / "G.npy"
    np.save(path, G.astype(np.float16), allow_pickle=False)
    Gm = np.load(path, mmap_mode="r")
    k = 40 if backend == "greedy" else k
    ref = solve(SelectionProblem(G.astype(np.float16).astype(np.float32), a, k, tau), backend, seed=0)
    prob = SelectionProblem(Gm, a, k, tau)
    prob.op = ColumnOperator(Gm, block_cols=600)  # half of N
    seen, cols = [], []
    up, col = linop._upcast, ColumnOperator.columns
    monkeypatch.setattr(linop, "_upcast", lambda B, dt: seen.append(B.shape[1]) or up(B, dt))
    monkeypatch.setattr(ColumnOperator, "columns", lambda self, idx: cols.append(len(idx)) or col(self, idx))
    res = solve(prob, backend, seed=0)
    assert seen and max(seen) <= 600 and max(cols, default=0) <= 600  # never a full float32 copy
    assert isinstance(prob.G, np.memmap) and prob.G.dtype == np.float16
    np.testing.assert_array_equal(res.indices, ref.indices)


def test_device_option_errors_and_restores_the_operator():
    import torch

    G, a, k, tau = instance(300, 4)
    prob = SelectionProblem(G, a, k, tau)
    op = prob.op
    with pytest.raises(InvalidParameterError, match="not a torch device"):
        solve(prob, "sca-exact", device="gpu please")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidParameterError, match="CUDA is not available"):
            solve(prob, "sca-exact", device="cuda")
    res = solve(prob, "sca-exact", device="cpu")
    assert prob.op is op  # the device applies to that solve only
    np.testing.assert_array_equal(res.indices, solve(prob, "sca-exact").indices)
