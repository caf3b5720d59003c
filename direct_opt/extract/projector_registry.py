"""Projectors by name: the registry :data:`PROJECTORS`, :func:`register_projector` and
:func:`make_projector` (a name, or a :class:`~direct_opt.extract.projectors.Projector` object
used as given)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..errors import InvalidParameterError, UnknownNameError
from ..registry import Registry
from .kronecker import KroneckerProjector
from .projectors import GaussianProjector, PaperProjector, Projector, SJLTProjector

#: name -> factory.  Capability ``input``: ``"flat"`` factories take (dim, k, seed, device,
#: **options) and project flat per-sample gradients; ``"model"`` factories (kronecker) take
#: (model, names, k, seed, device, **options) and hook the model's layers.
PROJECTORS: Registry[Callable[..., Any]] = Registry("projector")
PROJECTORS.add("gaussian", GaussianProjector, capabilities={"input": "flat"})
PROJECTORS.add("sjlt", SJLTProjector, capabilities={"input": "flat"})
PROJECTORS.add("kronecker", KroneckerProjector, capabilities={"input": "model"},
               description="Kronecker-factored (LoGra-style) projection of linear layers' gradients")
PROJECTORS.add("paper", PaperProjector, capabilities={"input": "flat"})


def register_projector(name: str, factory: Callable[..., Any] | None = None, *, description: str = "",
                       input: str = "flat", overwrite: bool = False) -> Any:
    """Make a projector factory available by name (``ExtractConfig(projector=name)``,
    ``direct-opt extract --projector``).  A ``"flat"`` factory is called as
    ``factory(dim=, k=, seed=, device=, **options)`` and returns a :class:`Projector`.
    Usable as a decorator; a different factory under a taken name needs ``overwrite=True``."""
    if input not in ("flat", "model"):
        raise InvalidParameterError(f"input must be 'flat' or 'model', got {input!r}.")

    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(f):
            raise InvalidParameterError(f"projector {name!r}: {f!r} is not callable.")
        return PROJECTORS.add(name, f, description=description, capabilities={"input": input}, overwrite=overwrite)

    return deco if factory is None else deco(factory)


def projector_input(name: Any) -> str:
    """``"flat"`` or ``"model"``: what the projector ``name`` (or a Projector object: flat) consumes."""
    if isinstance(name, Projector):
        return "flat"
    return PROJECTORS.entry(name).capabilities.get("input", "flat") if name in PROJECTORS else "flat"


def make_projector(
    name: Any, *, k: int, seed: int = 0, dim: int | None = None, device: torch.device | str = "cpu",
    model: torch.nn.Module | None = None, names: list[str] | None = None, **options: Any,
) -> Any:
    """Build the projector called ``name`` (see :data:`PROJECTORS`), or check and return a
    :class:`Projector` object passed as ``name`` (its ``dim`` and ``k`` must match).

    Flat projectors need ``dim`` (number of selected coordinates d); ``kronecker`` needs
    ``model`` and the selected parameter ``names``. ``options`` go to the constructor.
    """
    if isinstance(name, Projector):
        if (dim is not None and name.dim != dim) or name.k != k or options:
            raise InvalidParameterError(
                f"projector object {type(name).__name__}(dim={name.dim}, k={name.k}) does not fit this extraction "
                f"(dim={dim}, k_sketch={k}{', projector_options given' if options else ''}); build it with these sizes.")
        return name
    if not isinstance(name, str) or name not in PROJECTORS:
        raise UnknownNameError(f"unknown projector {name!r}; known projectors: {', '.join(sorted(PROJECTORS))}.")
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise InvalidParameterError(f"k_sketch={k!r} must be a positive integer.")
    factory = PROJECTORS.get(name)
    try:
        if projector_input(name) == "model":
            if model is None or names is None:
                raise InvalidParameterError(f"the {name} projector needs model= and names=.")
            return factory(model=model, names=names, k=k, seed=seed, device=device, **options)
        if dim is None:
            raise InvalidParameterError(f"the {name} projector needs dim= (number of coordinates).")
        return factory(dim=dim, k=k, seed=seed, device=device, **options)
    except TypeError as exc:
        raise InvalidParameterError(f"bad projector_options for {name!r}: {exc}") from exc
