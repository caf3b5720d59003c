"""Fixtures for the extraction tests."""

from __future__ import annotations

import pytest
import torch

from .extract_testlib import TinyMLP, make_data


@pytest.fixture
def mlp() -> TinyMLP:
    torch.manual_seed(0)
    return TinyMLP()


@pytest.fixture
def pool():
    return make_data(30, seed=1)


@pytest.fixture
def val():
    return make_data(12, seed=2)
