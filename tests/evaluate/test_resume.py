"""Resumable per (selector, seed): finished runs are skipped, a changed configuration is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from direct_opt.evaluate import AnnealSchedule, EvalReport, ResumeMismatchError, evaluate
from direct_opt.lm import lm_loss

from .evaluate_testlib import SCHEDULE

CALLS: list[int] = []


def counted(*, k, pool, seed, **_):
    """A callable selector that records every call (seed) and picks K rows by the seed."""
    CALLS.append(seed)
    return np.sort(np.random.default_rng(100 + seed).choice(pool.shape[0], k, replace=False))


def _run(state, data, out, seeds, **kw):
    return evaluate(state, lm_loss, data["pool"], data["val"], data["test"], [counted], k=kw.pop("k", 6),
                    seeds=seeds, schedule=kw.pop("schedule", SCHEDULE), out_dir=out, baseline=None,
                    progress=False, plot=False, **kw)


def test_resume_skips_finished_runs_and_refuses_other_configs(state, data, tmp_path):
    CALLS.clear()
    first = _run(state, data, tmp_path, [0])
    assert CALLS == [0]
    run0 = tmp_path / "runs" / "counted__seed0.json"
    text0 = run0.read_text()

    second = _run(state, data, tmp_path, [0, 1])
    assert CALLS == [0, 1]  # seed 0 was not selected (or annealed) again
    assert run0.read_text() == text0
    assert second.run("counted", 0) == first.run("counted", 0)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["counted__seed0.json", "counted__seed1.json"]
    assert EvalReport.load(tmp_path).seeds == [0, 1]

    # a third identical call runs nothing
    _run(state, data, tmp_path, [0, 1])
    assert CALLS == [0, 1]

    # another K / schedule in the same out_dir is refused before any work, naming what differs
    with pytest.raises(ResumeMismatchError, match=r"\bk\b"):
        _run(state, data, tmp_path, [0], k=5)
    with pytest.raises(ResumeMismatchError, match="schedule"):
        _run(state, data, tmp_path, [0], schedule=AnnealSchedule(steps=2, batch_size=4, eval_every=1))
    assert CALLS == [0, 1]

    # a run file from another configuration (e.g. other selector options) is refused too
    rec = json.loads(run0.read_text())
    rec["fingerprint"] = "0" * 20
    run0.write_text(json.dumps(rec))
    with pytest.raises(ResumeMismatchError, match="counted__seed0"):
        _run(state, data, tmp_path, [0])

    # overwrite=True discards finished runs and runs everything again
    third = _run(state, data, tmp_path, [0], k=5, overwrite=True)
    assert CALLS == [0, 1, 0]
    assert len(third.run("counted", 0)["indices"]) == 5
