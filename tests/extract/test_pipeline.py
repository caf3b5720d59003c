import json
import os
import subprocess
import sys
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from direct_opt.errors import (
    ExtractionError, InvalidParameterError, OutputLockedError, UnknownNameError,
)
from direct_opt.extract import ExtractConfig, extract_stats

from .extract_testlib import load_stats, mse_loss

FAST = dict(k_sketch=12, batch_size=8, verbose=False)


class FlakyPool(Sequence):
    """A pool whose items at index >= fail_at raise while armed (simulates a crash mid-run)."""

    def __init__(self, items, fail_at=None):
        self.items, self.fail_at, self.reads = list(items), fail_at, []

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __getitem__(self, i):
        if self.fail_at is not None and i >= self.fail_at:
            raise RuntimeError("simulated crash")
        self.reads.append(i)
        return self.items[i]


@pytest.mark.parametrize("projector", ["gaussian", "sjlt", "kronecker", "paper"])
def test_end_to_end_and_save_load(mlp, pool, val, tmp_path, projector):
    st = extract_stats(mlp, mse_loss, pool, val, ExtractConfig(projector=projector, **FAST))
    k = st.eigvals.shape[0]
    assert st.G_flat.shape == (k - st.k_star, 30) and st.G_stiff.shape == (st.k_star, 30)
    assert st.losses.shape == st.grad_norms.shape == st.a_stiff.shape == (30,)
    assert st.val_grad.shape == (k,)
    np.testing.assert_allclose(st.losses, mse_loss(mlp, tuple(torch.stack(c) for c in zip(*pool))).detach(),
                               rtol=1e-5, atol=1e-6)
    cfg = st.config
    json.dumps(cfg)  # JSON-safe
    assert cfg["extract"]["projector"] == projector and cfg["package"]["name"] == "direct_opt"
    assert cfg["model"]["parameters"][0] == ["fc1.weight", [7, 5], "float32"] and len(cfg["model"]["sha256"]) == 64
    back = load_stats(st.save(tmp_path / "s"))
    assert back.checksum() == st.checksum() and back.config == json.loads(json.dumps(cfg))


def test_paper_mode_equals_gaussian(mlp, pool, val):
    a = extract_stats(mlp, mse_loss, pool, val, ExtractConfig(projector="gaussian", **FAST))
    b = extract_stats(mlp, mse_loss, pool, val, ExtractConfig(projector="paper", **FAST))
    np.testing.assert_allclose(a.eigvals, b.eigvals, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(a.a_stiff, b.a_stiff, rtol=1e-3, atol=1e-4)


def test_deterministic_and_seed_sensitive(mlp, pool, val):
    a = extract_stats(mlp, mse_loss, pool, val, ExtractConfig(seed=3, **FAST))
    b = extract_stats(mlp, mse_loss, pool, val, ExtractConfig(seed=3, **FAST))
    c = extract_stats(mlp, mse_loss, pool, val, ExtractConfig(seed=4, **FAST))
    assert a.checksum() == b.checksum()
    assert a.checksum() != c.checksum()


def test_store_stiff_false_and_log_gap(mlp, pool, val):
    st = extract_stats(mlp, mse_loss, pool, val, ExtractConfig(store_stiff=False, elbow="log-gap", **FAST))
    assert st.G_stiff is None and st.config["split"]["elbow"] == "log-gap"


@pytest.mark.parametrize("projector", ["gaussian", "kronecker"])
def test_interrupt_and_resume_gives_identical_stats(mlp, pool, val, tmp_path, projector):
    cfg = dict(projector=projector, **FAST)
    ref = extract_stats(mlp, mse_loss, pool, val, ExtractConfig(**cfg))
    out = tmp_path / "run"
    flaky = FlakyPool(pool, fail_at=20)  # batches [0,8) [8,16) finish; [16,24) crashes
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract_stats(mlp, mse_loss, flaky, val, ExtractConfig(out_dir=str(out), **cfg))
    assert sorted(os.listdir(out / "shards")) == ["pool_000000.npy", "pool_000001.npy"]
    assert (out / "curvature" / "done.json").is_file() and not (out / ".lock").exists()
    flaky.fail_at, flaky.reads = None, []
    resumed = extract_stats(mlp, mse_loss, flaky, val, ExtractConfig(out_dir=str(out), **cfg))
    assert min(flaky.reads) == 16  # completed shards were not recomputed
    assert resumed.checksum() == ref.checksum()
    assert load_stats(out / "stats").checksum() == ref.checksum()
    assert json.loads((out / "progress.json").read_text())["done"] is True
    again = extract_stats(mlp, mse_loss, pool, val, ExtractConfig(out_dir=str(out), **cfg))  # all done: no-op
    assert again.checksum() == ref.checksum()


def test_resume_with_other_config_or_model_is_refused(mlp, pool, val, tmp_path):
    out = str(tmp_path / "run")
    extract_stats(mlp, mse_loss, pool, val, ExtractConfig(out_dir=out, **FAST))
    with pytest.raises(ExtractionError, match="config"):
        extract_stats(mlp, mse_loss, pool, val, ExtractConfig(out_dir=out, **{**FAST, "k_sketch": 10}))
    with torch.no_grad():
        mlp.fc1.bias.add_(1.0)
    with pytest.raises(ExtractionError, match="model"):
        extract_stats(mlp, mse_loss, pool, val, ExtractConfig(out_dir=out, **FAST))
    with pytest.raises(ExtractionError, match="train"):
        extract_stats(mlp, mse_loss, pool[:-1], val, ExtractConfig(out_dir=out, **FAST))


def test_lock_live_and_stale(mlp, pool, val, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(str(os.getppid()))  # a live process
    with pytest.raises(OutputLockedError, match="locked by process"):
        extract_stats(mlp, mse_loss, pool, val, ExtractConfig(out_dir=str(out), **FAST))
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / ".lock").write_text(proc.stdout.strip())  # a dead process: stale, taken over
    st = extract_stats(mlp, mse_loss, pool, val, ExtractConfig(out_dir=str(out), **FAST))
    assert st.n == 30 and not (out / ".lock").exists()


def test_bad_inputs(mlp, pool, val):
    with pytest.raises(ExtractionError, match="empty"):
        extract_stats(mlp, mse_loss, [], val, ExtractConfig(**FAST))
    with pytest.raises(ExtractionError, match="val_samples is empty"):
        extract_stats(mlp, mse_loss, pool, [], ExtractConfig(**FAST))
    for k in (0, -3):
        with pytest.raises(InvalidParameterError, match="k_sketch"):
            extract_stats(mlp, mse_loss, pool, val, ExtractConfig(**{**FAST, "k_sketch": k}))
    for field, name, known in (("projector", "dense", "gaussian, kronecker, paper, sjlt"),
                               ("curvature", "ggn", "fisher, hessian-lanczos"),
                               ("elbow", "knee", "energy, log-gap"), ("dtype", "int8", "bf16")):
        with pytest.raises(UnknownNameError, match=known):
            extract_stats(mlp, mse_loss, pool, val, ExtractConfig(**{**FAST, field: name}))
    with pytest.raises(InvalidParameterError, match="unknown parameters"):
        extract_stats(mlp, mse_loss, pool, val, ExtractConfig(param_filter=["fc9.weight"], **FAST))
    with pytest.raises(ExtractionError, match="selects no parameter"):
        extract_stats(mlp, mse_loss, pool, val, ExtractConfig(param_filter=lambda n: False, **FAST))


@pytest.mark.parametrize("projector", ["gaussian", "kronecker", "paper"])
def test_wrong_loss_shape(mlp, pool, val, projector):
    cfg = ExtractConfig(projector=projector, **FAST)
    with pytest.raises(ExtractionError, match=r"shape \(B,\)"):
        extract_stats(mlp, lambda m, b: mse_loss(m, b).mean(), pool, val, cfg)
    with pytest.raises(ExtractionError, match=r"shape \(B,\)"):
        extract_stats(mlp, lambda m, b: mse_loss(m, b)[:, None], pool, val, cfg)


@pytest.mark.parametrize("projector", ["gaussian", "sjlt", "kronecker", "paper"])
def test_non_finite_names_the_sample(mlp, pool, val, projector):
    bad = list(pool)
    bad[13] = (torch.full((5,), float("nan")), bad[13][1])
    with pytest.raises(ExtractionError, match="pool sample 13"):
        extract_stats(mlp, mse_loss, bad, val, ExtractConfig(projector=projector, **FAST))
    badv = list(val)
    badv[5] = (badv[5][0], torch.tensor(float("inf")))
    with pytest.raises(ExtractionError, match="validation sample 5"):
        extract_stats(mlp, mse_loss, pool, badv, ExtractConfig(projector=projector, **FAST))


def test_verbose_progress_bar(mlp, pool, val, capsys, caplog):
    with caplog.at_level("INFO", logger="direct_opt.extract"):
        extract_stats(mlp, mse_loss, pool[:8], val, ExtractConfig(**{**FAST, "verbose": True}))
    err = capsys.readouterr().err
    assert "pool" in err and "sample/s" in err
    assert "fingerprint (pool)" in err and "fingerprint (val)" in err  # the pass over every sample has a bar
    assert any(f"8 pool + {len(val)} val samples" in r.getMessage() for r in caplog.records)  # and its time
    extract_stats(mlp, mse_loss, pool[:8], val, ExtractConfig(**FAST))
    assert capsys.readouterr().err == ""
