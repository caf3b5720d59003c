"""direct_opt.threads: the reproducible computations run at one fixed torch thread count."""

from __future__ import annotations

import pytest
import torch

from direct_opt.errors import InvalidParameterError
from direct_opt.extract import ExtractConfig
from direct_opt.threads import REPRODUCIBLE_THREADS, reproducible, fixed_threads


def test_fixed_threads_sets_and_restores_the_count():
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with fixed_threads(1):
            assert torch.get_num_threads() == 1
            assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")  # numpy's BLAS
            with fixed_threads(2):  # nested: the outer setting holds
                assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3
        with fixed_threads(None):  # None leaves the setting alone
            assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_reproducible_restores_the_count_even_on_error():
    before = torch.get_num_threads()
    seen = []

    @reproducible
    def body():
        seen.append(torch.get_num_threads())
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        body()
    assert seen == [REPRODUCIBLE_THREADS] and torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_extract_config_rejects_a_bad_thread_count(bad):
    with pytest.raises(InvalidParameterError, match="threads"):
        ExtractConfig(threads=bad).validate()
