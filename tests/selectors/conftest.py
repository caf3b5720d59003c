"""Fixtures for the selector tests."""

from __future__ import annotations

import pytest

from .selectors_testlib import random_stats


@pytest.fixture
def stats_bundle():
    return random_stats()


@pytest.fixture
def stats(stats_bundle):
    return stats_bundle[0]
