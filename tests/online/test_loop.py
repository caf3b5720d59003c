"""OnlineBatches trains exactly the chosen sub-batches (hook-checked); the HF example runs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from direct_opt.errors import InvalidInputError
from direct_opt.lm import TinyGPT, lm_loss
from direct_opt.online import OnlineBatches, make_online_selector
from tests.evaluate.evaluate_testlib import CFG, tiny_data

ROOT = Path(__file__).resolve().parents[2]


def test_wrapper_trains_exactly_the_chosen_rows():
    data = tiny_data()
    model = TinyGPT(CFG, seed=0)
    sel = make_online_selector("blade", model=model, loss_fn=lm_loss, val=data["val"], b=4, seed=0)
    seen: list[torch.Tensor] = []  # hook after the selector copied its reference: only `model` records
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()) if m.training else None)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pool = data["pool"]
    steps = []
    for batch in OnlineBatches(sel, pool, super_batch=12, steps=3, seed=0, groups=data["groups"]):
        assert np.isin(batch.indices, batch.candidates).all() and np.unique(batch.indices).size == 4
        assert torch.equal(batch.data, pool[torch.from_numpy(batch.indices)])
        model.train()
        loss = lm_loss(model, batch.data).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps.append(batch.indices)
    # the training forwards (train mode) saw exactly the chosen rows; the reference was stepped 3 times
    assert len(seen) == 3
    for x, idx in zip(seen, steps):
        assert torch.equal(x, pool[torch.from_numpy(idx)][:, :-1])
    assert sel.cost["backward"] == 3 * (4 + len(data["val"]))


def test_wrapper_bad_input():
    data = tiny_data()
    sel = make_online_selector("uniform", model=TinyGPT(CFG), loss_fn=lm_loss, b=4)
    with pytest.raises(InvalidInputError, match="exceeds super_batch"):
        OnlineBatches(sel, data["pool"], super_batch=2, steps=1)
    with pytest.raises(InvalidInputError, match="empty"):
        OnlineBatches(sel, data["pool"][:0], super_batch=4, steps=1)
    with pytest.raises(InvalidInputError, match="OnlineSelector"):
        OnlineBatches(object(), data["pool"], super_batch=4, steps=1)


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                    reason="the Hugging Face example needs the [hf] extra (transformers)")
def test_hf_example_runs():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "online_hf.py"), "--steps", "3", "-b", "4",
                           "--super-batch", "16"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "blade: 3 steps" in proc.stdout and "validation loss" in proc.stdout
