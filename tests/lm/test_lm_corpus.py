"""Corpora from the stdlib / site-packages sources: determinism, disjointness, labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from direct_opt.errors import InvalidParameterError, UnknownNameError
from direct_opt.lm import DEGRADED_KINDS, Corpus, site_packages_corpus, stdlib_corpus

SIZES = dict(n_pool=96, n_val=16, n_test=24, n_pretrain=48, seq_len=32)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return stdlib_corpus(seed=0, **SIZES)


def _rows(t: torch.Tensor) -> set[bytes]:
    return {bytes(r.tolist()) for r in t}


def test_shapes_dtypes_and_ranges(corpus: Corpus) -> None:
    L = SIZES["seq_len"] + 1
    assert corpus.pool.shape == (96, L) and corpus.val.shape == (16, L) and corpus.test.shape == (24, L)
    assert corpus.pretrain.shape == (48, L) and corpus.seq_len == 32
    for t in (corpus.pool, corpus.val, corpus.test, corpus.pretrain):
        assert t.dtype == torch.long and int(t.min()) >= 0 and int(t.max()) <= 255
    assert corpus.pool_groups.shape == corpus.pool_ids.shape == (96,)
    assert len(set(corpus.pool_ids.tolist())) == 96
    assert corpus.target_domain == "docstrings" == corpus.info["target_domain"]


def test_groups_and_degraded_kinds(corpus: Corpus) -> None:
    groups = set(corpus.pool_groups.tolist())
    clean = {g for g in groups if g.startswith("clean:")}
    assert len(clean) >= 3 and "clean:docstrings" in clean and "clean:comments" in clean
    assert any(g.startswith("clean:code:") for g in clean)
    assert {f"degraded:{k}" for k in DEGRADED_KINDS} <= groups
    assert groups == {g for g in groups if g.startswith(("clean:", "degraded:"))}
    for g, ident in zip(corpus.pool_groups, corpus.pool_ids):
        assert ident.startswith(g + "/")
    trunc = corpus.pool[torch.from_numpy(corpus.group_mask("degraded:truncated"))]
    assert bool((trunc[:, -1] == 0).all())  # padded tail
    dup = corpus.pool[torch.from_numpy(corpus.group_mask("degraded:duplicate"))]
    assert len(_rows(dup)) < dup.shape[0]  # exact copies of one another
    assert sum(corpus.info["group_counts"].values()) == 96


def test_test_set_disjoint(corpus: Corpus) -> None:
    test = _rows(corpus.test)
    assert not test & _rows(corpus.pool)
    assert not test & _rows(corpus.val)
    assert not test & _rows(corpus.pretrain)
    assert not set(corpus.info["test_sources"]) & set(corpus.info["val_sources"])  # file-disjoint


def test_deterministic_given_seed(corpus: Corpus) -> None:
    again = stdlib_corpus(seed=0, **SIZES)
    for name in ("pool", "val", "test", "pretrain"):
        assert torch.equal(getattr(corpus, name), getattr(again, name)), name
    assert (corpus.pool_groups == again.pool_groups).all() and (corpus.pool_ids == again.pool_ids).all()
    other = stdlib_corpus(seed=1, **SIZES)
    assert not torch.equal(corpus.test, other.test)


def test_options_and_errors() -> None:
    c = stdlib_corpus(seed=2, n_pool=40, n_val=8, n_test=8, n_pretrain=0, seq_len=16,
                      domains=["docstrings", "comments", "code:core"], target_domain="comments",
                      target_in_pool=False, degraded_kinds=("random",), clean_frac=0.5)
    assert set(c.pool_groups.tolist()) == {"clean:docstrings", "clean:code:core", "degraded:random"}
    assert c.pretrain.shape[0] == 0 and c.target_domain == "comments"
    with pytest.raises(UnknownNameError):
        stdlib_corpus(seed=0, n_pool=8, n_val=4, n_test=4, n_pretrain=0, target_domain="poetry")
    with pytest.raises(UnknownNameError):
        stdlib_corpus(seed=0, n_pool=8, n_val=4, n_test=4, n_pretrain=0, degraded_kinds=("blurred",))
    with pytest.raises(InvalidParameterError):
        stdlib_corpus(seed=0, n_pool=0)


def test_quick_preset_sizes() -> None:
    c = stdlib_corpus(seed=0, quick=True, n_pretrain=0)
    assert (c.pool.shape[0], c.val.shape[0], c.test.shape[0]) == (256, 32, 64)


def test_site_packages_corpus_numpy_only_fallback() -> None:
    c = site_packages_corpus(seed=0, packages=("surely_not_installed_pkg",), **SIZES)
    assert list(c.info["packages"]) == ["numpy"]
    assert {"clean:docstrings", "clean:comments", "clean:code:numpy"} <= set(c.pool_groups.tolist())
    assert not _rows(c.test) & _rows(c.pool)
    again = site_packages_corpus(seed=0, packages=("surely_not_installed_pkg",), **SIZES)
    assert torch.equal(c.pool, again.pool) and torch.equal(c.test, again.test)
    assert np.array_equal(c.pool_groups, again.pool_groups)
