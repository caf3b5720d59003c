"""Selector specifications: what the harness runs, under which label.

A selector is given as

* a registry name: ``"random"``, ``"less"``, ``"direct"``;
* a name with options, as a string ``"direct:backend=greedy,tau_rel=0.2"`` (values are
  parsed as JSON when possible, else kept as strings);
* a dict ``{"name": "direct", "options": {"backend": "greedy"}, "label": "direct/greedy"}``;
* a :class:`SelectorSpec`;
* a callable ``fn(k=, stats=, model=, loss_fn=, pool=, reference=, seed=) -> indices``
  (or an object with ``.indices``); label = ``fn.__name__``. Set ``fn.needs_stats = True``
  to have the harness extract gradient statistics for it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..errors import InvalidParameterError

_LABEL_OK = re.compile(r"[^A-Za-z0-9._+-]+")
#: the selectors ``direct-opt evaluate`` compares when none are named: the baseline, the paper's
#: program, LESS, the default selector and the other peers
ALL_SELECTORS = ("random", "direct", "less", "less-diverse", "grad-norm", "loss", "excess-loss", "taylor")


@dataclass(frozen=True)
class SelectorSpec:
    """One selector to evaluate.

    Attributes:
        label: unique display name (also the run-file name).
        name: registry name (None for a callable).
        options: keyword options passed to ``select`` (JSON-safe).
        fn: a callable selector (None for a registry name).
    """

    label: str
    name: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    fn: Callable[..., Any] | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-safe identity (part of the resume fingerprint)."""
        if self.fn is not None:
            mod = getattr(self.fn, "__module__", "?")
            qual = getattr(self.fn, "__qualname__", type(self.fn).__name__)
            return {"label": self.label, "callable": f"{mod}.{qual}", "options": _json_safe(dict(self.options))}
        return {"label": self.label, "name": self.name, "options": _json_safe(dict(self.options))}

    @property
    def file_stem(self) -> str:
        return _LABEL_OK.sub("_", self.label).strip("_") or "selector"


def _json_safe(x: Any) -> Any:
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, Mapping):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return repr(x)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def default_label(name: str, options: Mapping[str, Any]) -> str:
    """``name`` alone, ``direct/<backend>`` for a backend-only option, else ``name[k=v,...]``."""
    if not options:
        return name
    if set(options) == {"backend"}:
        return f"{name}/{options['backend']}"
    return name + "[" + ",".join(f"{k}={v}" for k, v in sorted(options.items())) + "]"


def parse_selector(item: Any) -> SelectorSpec:
    """Turn any accepted form (see the module docstring) into a :class:`SelectorSpec`."""
    if isinstance(item, SelectorSpec):
        return item
    if isinstance(item, str):
        text = item.strip()
        if not text:
            raise InvalidParameterError("empty selector name.")
        name, _, rest = text.partition(":")
        options: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, val = part.partition("=")
            if not eq or not key.strip():
                raise InvalidParameterError(
                    f"selector option {part!r} in {text!r} must look like key=value (e.g. direct:backend=greedy)."
                )
            options[key.strip()] = _parse_value(val.strip())
        name = name.strip()
        return SelectorSpec(label=default_label(name, options), name=name, options=options)
    if isinstance(item, Mapping):
        if "name" not in item:
            raise InvalidParameterError(f"selector dict {dict(item)!r} needs a 'name' key.")
        bad = sorted(set(item) - {"name", "options", "label"})
        if bad:
            raise InvalidParameterError(f"selector dict has unknown key(s) {bad}; use name / options / label.")
        options = dict(item.get("options") or {})
        name = str(item["name"])
        return SelectorSpec(label=str(item.get("label") or default_label(name, options)), name=name, options=options)
    if callable(item):
        return SelectorSpec(label=str(getattr(item, "__name__", type(item).__name__)), fn=item)
    raise InvalidParameterError(
        f"cannot use {item!r} as a selector: pass a name, 'name:key=value', a dict or a callable."
    )


def parse_selectors(items: Any) -> list[SelectorSpec]:
    """Parse a list (or a comma-free single string) of selectors; labels must be unique."""
    if isinstance(items, (str, Mapping, SelectorSpec)) or callable(items):
        items = [items]
    specs = [parse_selector(x) for x in items]
    if not specs:
        raise InvalidParameterError("no selectors given; pass at least one (e.g. ['random', 'less']).")
    seen: dict[str, int] = {}
    for s in specs:
        seen[s.label] = seen.get(s.label, 0) + 1
    dup = sorted(k for k, v in seen.items() if v > 1)
    if dup:
        raise InvalidParameterError(f"duplicate selector label(s) {dup}; give each a distinct 'label'.")
    stems = [s.file_stem for s in specs]
    if len(set(stems)) != len(stems):
        raise InvalidParameterError(f"selector labels {[s.label for s in specs]} collide as file names; relabel them.")
    return specs
