"""One small registry for everything chosen by name: backends, selectors, online selectors,
loss laws, projectors.

    from direct_opt.registry import Registry
    LAWS = Registry("loss law")
    @LAWS.register("momentum", description="Tissue et al. 2024", capabilities={"model_size": False})
    class MomentumLaw: ...
    LAWS.get("momentum")         # the registered object
    LAWS.names()                 # sorted names, for the CLI and the docs
    LAWS.describe()              # {name: {"description": ..., "capabilities": {...}}}

Registering a second, different object under a taken name is an error unless
``overwrite=True`` (re-registering the same object, e.g. on a module reload, is allowed).
An unknown name is an :class:`~direct_opt.errors.UnknownNameError` listing the known ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

from .errors import InvalidParameterError, UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object with its description and capabilities."""

    name: str
    obj: T
    description: str = ""
    capabilities: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> object, with descriptions, capabilities and one overwrite rule."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # what the entries are, for error messages ("backend", "loss law", ...)
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, obj: T, *, description: str = "", capabilities: dict[str, Any] | None = None,
            overwrite: bool = False) -> T:
        """Register ``obj`` under ``name``; returns ``obj``."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidParameterError(f"a {self.kind} needs a non-empty string name, got {name!r}.")
        old = self._entries.get(name)
        if old is not None and old.obj is not obj and not overwrite:
            raise InvalidParameterError(
                f"a {self.kind} named {name!r} is already registered; pass overwrite=True to replace it."
            )
        if not description:
            doc = (getattr(obj, "__doc__", None) or "").strip()
            description = doc.splitlines()[0] if doc else ""
        self._entries[name] = Entry(name, obj, description, dict(capabilities or {}))
        return obj

    def register(self, name: str, *, description: str = "", capabilities: dict[str, Any] | None = None,
                 overwrite: bool = False) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(obj: T) -> T:
            return self.add(name, obj, description=description, capabilities=capabilities, overwrite=overwrite)

        return deco

    def remove(self, name: str) -> None:
        """Forget ``name`` (no error if it is not registered)."""
        self._entries.pop(name, None)

    def entry(self, name: str) -> Entry[T]:
        """The :class:`Entry` for ``name``; an UnknownNameError naming the known ones otherwise."""
        if not isinstance(name, str) or name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {self.names()}.")
        return self._entries[name]

    def get(self, name: str) -> T:
        """The object registered as ``name``."""
        return self.entry(name).obj

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def describe(self) -> dict[str, dict[str, Any]]:
        """``{name: {"description", "capabilities"}}``, sorted by name (JSON-safe if capabilities are)."""
        return {n: {"description": e.description, "capabilities": dict(e.capabilities)}
                for n, e in sorted(self._entries.items())}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return iter(self.names())
