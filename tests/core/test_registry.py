import pytest

from direct_opt.errors import InvalidParameterError, UnknownNameError
from direct_opt.registry import Registry


def test_register_get_describe_and_overwrite_rule():
    reg = Registry("widget")

    @reg.register("b", capabilities={"fast": True})
    class B:
        """A b widget.

        More text."""

    reg.add("a", len, description="length")
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"] and "b" in reg and len(reg) == 2
    assert reg.get("b") is B
    assert reg.describe()["b"] == {"description": "A b widget.", "capabilities": {"fast": True}}
    reg.add("b", B)  # the same object again (a module reload) is fine
    with pytest.raises(InvalidParameterError, match="already registered.*overwrite=True"):
        reg.add("b", int)
    reg.add("b", int, overwrite=True)
    assert reg.get("b") is int
    with pytest.raises(UnknownNameError, match=r"unknown widget 'c'; known: \['a', 'b'\]"):
        reg.get("c")
    with pytest.raises(InvalidParameterError, match="non-empty"):
        reg.add("", int)
    reg.remove("a")
    assert reg.names() == ["b"]


def test_backends_and_selectors_share_the_registry_rule():
    import numpy as np

    from direct_opt.selectors import register_selector, unregister_selector, Pick, describe_selectors
    from direct_opt.solvers import Backend, register_backend
    from direct_opt.solvers.base import BACKENDS
    from direct_opt.solvers.greedy import Greedy as GreedyBackend

    class Other(Backend):
        """A second class under a taken name."""
        name = "greedy"

    with pytest.raises(InvalidParameterError, match="already registered"):
        register_backend(Other)
    assert BACKENDS.get("greedy") is GreedyBackend and register_backend(GreedyBackend) is GreedyBackend
    assert BACKENDS.describe()["greedy"]["capabilities"]["forms"] == sorted(GreedyBackend.forms)

    def first(inp, *, shift: int = 0):
        """First K."""
        return Pick(np.arange(inp.k) + shift)

    register_selector("test-first", first)
    try:
        assert describe_selectors()["test-first"] == {"description": "First K.", "options": ["shift"]}
        with pytest.raises(InvalidParameterError, match="already registered"):
            register_selector("test-first", lambda inp: None)
    finally:
        unregister_selector("test-first")
