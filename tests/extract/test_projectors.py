import math

import pytest
import torch

from direct_opt.errors import InvalidParameterError, UnknownNameError
from direct_opt.extract import (
    GaussianProjector, KroneckerProjector, PaperProjector, SJLTProjector, make_projector,
)
from direct_opt.extract.projectors import BLOCK, derive_seed


def explicit_gaussian(dim: int, k: int, seed: int, salt: str = "gaussian") -> torch.Tensor:
    """Independent construction of R^T (d, k) from the documented block scheme."""
    blocks = []
    for b in range(math.ceil(dim / BLOCK)):
        n = min(dim, (b + 1) * BLOCK) - b * BLOCK
        gen = torch.Generator().manual_seed(derive_seed(seed, salt, b))
        blocks.append(torch.randn(n, k, generator=gen))
    return torch.cat(blocks) / math.sqrt(k)


def test_gaussian_equals_dense_matrix_and_is_chunk_invariant():
    d, k = 2500, 16
    g = torch.randn(3, d)
    dense = explicit_gaussian(d, k, seed=7)
    small = GaussianProjector(d, k, seed=7, max_chunk_bytes=1)  # one BLOCK per chunk
    big = GaussianProjector(d, k, seed=7)
    torch.testing.assert_close(small.project(g), g @ dense, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(big.project(g), small.project(g), rtol=1e-5, atol=1e-5)
    assert torch.equal(big.matrix(), dense)


def test_gaussian_entries_and_seeds():
    p = GaussianProjector(4000, 64, seed=1)
    m = p.matrix()
    assert abs(m.mean().item()) < 3e-3
    assert m.var().item() == pytest.approx(1 / 64, rel=0.03)
    assert torch.equal(m, GaussianProjector(4000, 64, seed=1).matrix())
    assert not torch.equal(m, GaussianProjector(4000, 64, seed=2).matrix())
    # the paper projector uses the very same matrix
    assert torch.equal(PaperProjector(4000, 64, seed=1).matrix(), m)


def test_sjlt_structure_and_dense_equivalence():
    d, k, s = 1500, 32, 4
    p = SJLTProjector(d, k, seed=3, s=s)
    m = p.matrix()
    nnz = (m != 0).sum(1)
    assert torch.all(nnz == s)
    assert torch.allclose(m[m != 0].abs(), torch.full_like(m[m != 0], 1 / math.sqrt(s)))
    rows, vals = p.hashes(0, d)
    dense = torch.zeros(d, k).scatter_add_(1, rows, vals)
    g = torch.randn(5, d)
    torch.testing.assert_close(p.project(g), g @ dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["gaussian", "sjlt"])
def test_jl_inner_products(name):
    d, k, n = 3000, 2048, 12
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(n, d), dim=1)
    proj = make_projector(name, k=k, seed=5, dim=d)
    z = proj.project(x)
    err = (z @ z.T - x @ x.T).abs().max().item()
    assert err < 0.2  # JL std ~ sqrt(2/k) = 0.03; 6 sigma


def test_kronecker_jl_on_matrices():
    model = torch.nn.Linear(64, 48, bias=False)
    proj = KroneckerProjector(model, ["weight"], k=1024, seed=0)
    assert (proj.k_in, proj.k_out, proj.k) == (32, 32, 1024)
    layer = proj.layers[0]
    torch.manual_seed(1)
    xs = torch.nn.functional.normalize(torch.randn(10, 48 * 64), dim=1).reshape(10, 48, 64)
    z = torch.einsum("oa,noi,ib->nab", layer.p_out, xs, layer.p_in).reshape(10, -1)
    flat = xs.reshape(10, -1)
    assert (z @ z.T - flat @ flat.T).abs().max().item() < 0.35


def test_unknown_projector_lists_known():
    with pytest.raises(UnknownNameError, match="gaussian.*kronecker.*paper.*sjlt"):
        make_projector("nope", k=4, dim=10)
    with pytest.raises(InvalidParameterError):
        make_projector("gaussian", k=0, dim=10)
    with pytest.raises(InvalidParameterError):
        make_projector("sjlt", k=4, dim=10, bogus=1)


@pytest.mark.parametrize("name", ["gaussian", "sjlt"])
def test_device_cache_changes_no_value(name):
    d, k = 5000, 64
    g = torch.randn(3, d)
    kw = {"max_chunk_bytes": 1}  # one BLOCK per chunk: 5 chunks
    off = make_projector(name, k=k, seed=2, dim=d, cache_bytes=0, **kw)
    full = make_projector(name, k=k, seed=2, dim=d, **kw)
    part = make_projector(name, k=k, seed=2, dim=d, cache_bytes=2 * BLOCK * k * 4, **kw)  # gaussian: 2 of 5 chunks
    ref = off.project(g)
    for p in (full, part):
        for _ in range(2):  # first call fills the cache, second reads it
            assert torch.equal(p.project(g), ref)
    assert off._cache == {} and len(full._cache) == 5
    assert 0 < part._cached_bytes <= part.cache_bytes
    if name == "gaussian":
        assert len(part._cache) == 2
    with pytest.raises(InvalidParameterError, match="cache_bytes"):
        make_projector(name, k=k, seed=2, dim=d, cache_bytes=-1)
