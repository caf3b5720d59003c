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
