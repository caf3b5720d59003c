"""Solver backends behind one registry (see :func:`solve`)."""

from .base import Backend, Context, Relaxation, available_backends, get_backend, register_backend, solve
from . import exact, frank_wolfe, greedy, pga_dykstra, portfolio, sca  # noqa: F401  (register the built-in backends)

__all__ = ["Backend", "Context", "Relaxation", "available_backends", "get_backend", "register_backend", "solve"]
