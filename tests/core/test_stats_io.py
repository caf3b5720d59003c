"""GradientStats on disk: round trip, memory maps, metadata, tamper detection."""

import json

import numpy as np
import pytest

from direct_opt import GradientStats, SelectionProblem, solve
from direct_opt.errors import StatsFormatError


def make_stats(n=50, r=6, ks=3, dtype=np.float32):
    rng = np.random.default_rng(1)
    return GradientStats(
        G_flat=rng.standard_normal((r, n)).astype(dtype),
        a_stiff=rng.random(n),
        eigvals=np.sort(rng.random(r + ks))[::-1],
        k_star=ks,
        G_stiff=rng.standard_normal((ks, n)),
        val_grad=rng.standard_normal(r + ks),
        losses=rng.random(n),
        grad_norms=rng.random(n),
        metadata={"ids": np.arange(n), "group": np.array(["web", "code"])[np.arange(n) % 2], "tokens": np.full(n, 64)},
        config={"projector": "sjlt", "k_sketch": r + ks},
    )


@pytest.mark.parametrize("mmap", [False, True])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_round_trip(tmp_path, mmap, dtype):
    s = make_stats(dtype=dtype)
    s.save(tmp_path / "st")
    t = GradientStats.load(tmp_path / "st", mmap=mmap)
    assert t.checksum() == s.checksum()
    assert t.G_flat.dtype == dtype
    assert isinstance(t.G_flat, np.memmap) == mmap
    assert list(t.metadata["group"][:2]) == ["web", "code"]
    assert t.config == s.config and t.k_star == 3
    r1 = solve(SelectionProblem.from_stats(s, k=5))
    r2 = solve(SelectionProblem.from_stats(t, k=5))
    assert np.array_equal(r1.indices, r2.indices)


def test_tampered_array_detected(tmp_path):
    d = make_stats().save(tmp_path / "st")
    arr = np.load(d / "a_stiff.npy")
    arr[0] += 1
    np.save(d / "a_stiff.npy", arr)
    with pytest.raises(StatsFormatError, match="a_stiff.npy.*checksum"):
        GradientStats.load(d)


def test_truncated_file_detected(tmp_path):
    d = make_stats().save(tmp_path / "st")
    raw = (d / "G_flat.npy").read_bytes()
    (d / "G_flat.npy").write_bytes(raw[:-7])
    with pytest.raises(StatsFormatError, match="G_flat.npy.*truncated"):
        GradientStats.load(d, mmap=True)


def test_manifest_shape_mismatch(tmp_path):
    d = make_stats().save(tmp_path / "st")
    m = json.loads((d / "manifest.json").read_text())
    m["arrays"]["losses"]["shape"] = [49]
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StatsFormatError, match="losses.npy"):
        GradientStats.load(d)


def test_wrong_version(tmp_path):
    d = make_stats().save(tmp_path / "st")
    m = json.loads((d / "manifest.json").read_text())
    m["format_version"] = 99
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(StatsFormatError, match="format_version"):
        GradientStats.load(d)


def test_object_metadata_rejected():
    with pytest.raises(ValueError, match="pickle"):
        GradientStats(G_flat=np.ones((2, 3)), a_stiff=np.ones(3), metadata={"x": np.array([{}, {}, {}], dtype=object)})


def test_eigen_coords_stacks_stiff_first():
    s = make_stats()
    E = s.eigen_coords()
    assert E.shape == (9, 50)
    assert np.array_equal(E[:3], s.G_stiff) and np.allclose(E[3:], s.G_flat)
