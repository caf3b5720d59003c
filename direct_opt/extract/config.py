"""ExtractConfig: every knob of the extraction, validated and JSON-serialisable."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..errors import InvalidParameterError, UnknownNameError

#: Names accepted by ``ExtractConfig.dtype`` (aliases map to the canonical name).
DTYPES: Mapping[str, str] = {
    "float32": "float32", "fp32": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16",
}

ParamFilter = Sequence[str] | Callable[[str], bool] | None


@dataclass
class ExtractConfig:
    """Configuration of :func:`direct_opt.extract.extract_stats`.

    Attributes:
        k_sketch: sketch size k (rows of the projector). For ``curvature="hessian-lanczos"``
            the number of Hessian eigenpairs (capped at the number of parameters d).
        projector: projector name (``gaussian``, ``sjlt``, ``kronecker``, ``paper``, or one added
            with :func:`~direct_opt.extract.projectors.register_projector`), or a
            :class:`~direct_opt.extract.Projector` object (dim = the number of selected
            coordinates, k = ``k_sketch``).
        elbow_energy: cumulative-energy threshold of the ``energy`` elbow rule, in (0, 1].
        elbow: elbow rule name (``energy`` or ``log-gap``).
        param_filter: parameters to differentiate: a list of names, a predicate
            ``name -> bool``, or None for the trainable ones (``requires_grad``; a PEFT/LoRA
            model's adapters; all parameters if none is trainable). The others are constants.
        batch_size: samples per micro-batch B (memory is O(B*d); O(B*k) for kronecker).
        dtype: compute precision: ``float32`` or autocast ``bfloat16``/``float16``.
        device: torch device string; the model is moved there.
        seed: seed of every random choice (projector matrices, Lanczos start vector).
        curvature: ``fisher`` (sketched validation Fisher, the paper) or ``hessian-lanczos``.
        out_dir: directory for incremental, resumable output (None: in memory only).
        store_stiff: keep the (k*, N) stiff eigen-coordinates in the stats.
        verbose: show tqdm progress bars.
        projector_options: extra keyword options of the projector (e.g. ``{"s": 4}`` for
            sjlt, ``{"generator": "device"}`` for gaussian, ``{"k_in": 8, "k_out": 8}``).
        lanczos_steps: Lanczos iterations for ``hessian-lanczos`` (None: min(d, 2k + 20)).
        collate_fn: turns a list of samples into a batch (default: token dicts of unequal
            length are right-padded with ``attention_mask`` 0, everything else is stacked with a
            leading B dim by ``torch.utils.data.default_collate``). ``transformers`` collators
            (e.g. ``DataCollatorWithPadding``) work as they are; ``BatchEncoding`` batches are
            turned into dicts.
        threads: torch CPU threads during the extraction (default 1: the stats are bit-identical
            whatever the machine's core count, see :mod:`direct_opt.threads`; None: torch's
            current setting, faster on many cores but the last bits then depend on it).
        optimizer_state: the checkpoint's torch Adam/AdamW ``optimizer.state_dict()`` (e.g.
            ``TrainState.optim_state``), optimizer built on ``model.parameters()``, on the trainable
            ones, or a ``transformers.Trainer`` checkpoint's ``optimizer.pt`` (read it with
            :func:`~direct_opt.extract.adam.load_optimizer_state`). When given,
            the stats also hold the sketches of each pool sample's Adam update direction
            (``stats.adam_coords``, the features of faithful LESS); needs a dense projector
            (``gaussian``, ``sjlt``) or ``curvature="hessian-lanczos"``. Recorded in the
            provenance as a summary (step, betas, eps, SHA-256 of the moments).
    """

    k_sketch: int = 2048
    projector: Any = "gaussian"
    elbow_energy: float = 0.945
    elbow: str = "energy"
    param_filter: ParamFilter = None
    batch_size: int = 16
    dtype: str = "float32"
    device: str = "cpu"
    seed: int = 0
    curvature: str = "fisher"
    out_dir: str | None = None
    store_stiff: bool = True
    verbose: bool = True
    projector_options: dict[str, Any] = field(default_factory=dict)
    lanczos_steps: int | None = None
    collate_fn: Callable[[list[Any]], Any] | None = None
    threads: int | None = 1
    optimizer_state: Mapping[str, Any] | None = None

    def validate(self) -> "ExtractConfig":
        """Check ranges and names; raise InvalidParameterError / UnknownNameError. Returns self."""
        from .curvature import CURVATURES
        from .elbow import ELBOWS
        from .projector_registry import PROJECTORS

        if not isinstance(self.k_sketch, int) or isinstance(self.k_sketch, bool) or self.k_sketch <= 0:
            raise InvalidParameterError(f"k_sketch={self.k_sketch!r} must be a positive integer (e.g. 2048).")
        if not isinstance(self.batch_size, int) or self.batch_size <= 0:
            raise InvalidParameterError(f"batch_size={self.batch_size!r} must be a positive integer.")
        if not 0.0 < float(self.elbow_energy) <= 1.0:
            raise InvalidParameterError(f"elbow_energy={self.elbow_energy!r} must lie in (0, 1] (paper: 0.945).")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads <= 0):
            raise InvalidParameterError(f"threads={self.threads!r} must be a positive integer or None "
                                        "(None: torch's current thread count).")
        if self.lanczos_steps is not None and self.lanczos_steps <= 0:
            raise InvalidParameterError(f"lanczos_steps={self.lanczos_steps!r} must be positive or None.")
        from .projectors import Projector

        if isinstance(self.projector, str):
            if self.projector not in PROJECTORS:
                raise UnknownNameError(f"unknown projector {self.projector!r}; known projectors: {', '.join(PROJECTORS)}.")
        elif not isinstance(self.projector, Projector):
            raise InvalidParameterError(
                f"projector must be a registered name ({', '.join(PROJECTORS)}) or a "
                f"direct_opt.extract.Projector object, got {type(self.projector).__name__}.")
        for label, value, known in (
            ("curvature", self.curvature, CURVATURES),
            ("elbow", self.elbow, ELBOWS),
            ("dtype", self.dtype, DTYPES),
        ):
            if value not in known:
                raise UnknownNameError(
                    f"unknown {label} {value!r}; known {label}s: {', '.join(sorted(known))}."
                )
        if self.optimizer_state is not None:
            from .adam import describe_optimizer_state

            describe_optimizer_state(self.optimizer_state)  # raises on a malformed state dict
            check_adam_projector(self.projector)
        if not isinstance(self.projector_options, Mapping):
            raise InvalidParameterError("projector_options must be a dict of keyword options.")
        return self

    @property
    def torch_dtype_name(self) -> str:
        """Canonical compute dtype name (``float32``, ``bfloat16``, ``float16``)."""
        return DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view (callables become their qualified names)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            out[f.name] = _json_safe(getattr(self, f.name))
        if self.optimizer_state is not None:
            from .adam import describe_optimizer_state

            out["optimizer_state"] = describe_optimizer_state(self.optimizer_state)
        out["dtype"] = self.torch_dtype_name
        return out

    def identity(self) -> dict[str, Any]:
        """The fields that change the numbers (used to validate a resumed out_dir)."""
        d = self.to_dict()
        for key in ("verbose", "out_dir"):
            d.pop(key, None)
        return d


def check_adam_projector(projector: Any) -> None:
    """InvalidParameterError unless ``projector`` forms the per-sample gradients that the Adam
    features (``optimizer_state``) transform."""
    if projector in ("kronecker", "paper"):
        raise InvalidParameterError(
            f"optimizer_state (Adam features for LESS) needs the per-sample gradients, which projector "
            f"{projector!r} never forms; use projector='gaussian' or 'sjlt', or drop optimizer_state.")


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "describe") and callable(value.describe):  # a Projector object: what it is
        return _json_safe(value.describe())
    if callable(value):
        mod = getattr(value, "__module__", "?")
        name = getattr(value, "__qualname__", type(value).__name__)
        return f"<callable {mod}.{name}>"
    return str(value)
