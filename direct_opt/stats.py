"""GradientStats: the solver-facing summary of per-sample gradients (docs/math.md, "Gradient statistics").

In memory it is a handful of arrays; on disk it is a directory holding one ``.npy``
file per array plus ``manifest.json`` (format version, shapes, dtypes, SHA-256
checksums, the extraction config/provenance).  Arrays load without pickle and,
optionally, as read-only memory maps so pools larger than RAM can be solved.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import re
import shutil
import tempfile
from glob import escape as glob_escape
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import (
    DtypeError,
    InvalidInputError,
    InvalidParameterError,
    NegativeCostError,
    NonFiniteError,
    OutputPathError,
    ShapeMismatchError,
    StatsFormatError,
)
from .output import _UMASK, atomic_file, write_error, write_text_atomic  # noqa: F401 - write_error re-exported

FORMAT_NAME = "direct_opt.gradient_stats"
FORMAT_VERSION = 3  # 2 added sample_ids / token_counts; 3 val_coords / adam_coords / val_groups (LESS)
READABLE_VERSIONS = (1, 2, 3)  # older directories load with the newer fields None
MANIFEST = "manifest.json"
# Optional (N,) / (k,) / (k*, N) arrays beside the required ones, in save order.
_OPTIONAL = ("eigvals", "G_stiff", "val_grad", "losses", "grad_norms", "val_coords", "adam_coords")
_MATRICES = ("G_stiff", "val_coords", "adam_coords")
# Optional label arrays (integers or fixed-width strings, not floats): per-sample (N,) ids and
# token counts, and the (M,) validation group labels.
_PER_SAMPLE = ("sample_ids", "token_counts", "val_groups")
_FLOAT_KINDS = "f"
_CHUNK = 1 << 16  # columns checked per chunk when validating large (memory-mapped) G


_META_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def check_metadata_key(key: str) -> None:
    """A metadata key names a file (``meta.<key>.npy``): letters, digits, ``_ . -``, at most 128
    characters, not starting with ``.`` or ``-`` and without ``..``; else InvalidParameterError."""
    if not _META_KEY.fullmatch(key) or ".." in key:
        raise InvalidParameterError(
            f"metadata key {key!r} cannot name a file: use letters, digits, '_', '.' and '-' "
            "(at most 128, not starting with '.' or '-', no '..', no '/' or NUL), e.g. 'doc_id'."
        )


def _check_float(name: str, x: np.ndarray) -> None:
    if x.dtype.kind not in _FLOAT_KINDS:
        raise DtypeError(
            f"{name} has dtype {x.dtype}; expected a floating dtype (float16/32/64). "
            f"Convert it with np.asarray({name}, dtype=np.float32)."
        )


def check_finite(name: str, x: np.ndarray, axis_name: str = "column") -> None:
    """Raise NonFiniteError naming the first non-finite entry of ``x`` (chunked for big arrays)."""
    if x.ndim == 2 and x.shape[1] > _CHUNK:
        for s in range(0, x.shape[1], _CHUNK):
            check_finite(name, np.asarray(x[:, s : s + _CHUNK]), axis_name)
        return
    bad = ~np.isfinite(np.asarray(x))
    if bad.any():
        pos = np.argwhere(bad)[0]
        raise NonFiniteError(
            f"{name} contains NaN/Inf (first at index {tuple(int(p) for p in pos)}); "
            "drop or recompute the offending samples before building the problem."
        )


def real_scalar(name: str, value: Any, *, finite: bool = True) -> float:
    """``float(value)`` for a real number (bool and non-numeric types rejected) or InvalidParameterError."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidParameterError(f"{name}={value!r} must be a real number, not {type(value).__name__}.")
    v = float(value)
    if finite and not np.isfinite(v):
        raise InvalidParameterError(f"{name}={value!r} must be finite.")
    return v


def int_scalar(name: str, value: Any, minimum: int | None = None) -> int:
    """``int(value)`` for an integer (bool and floats rejected) or InvalidParameterError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidParameterError(f"{name}={value!r} must be an integer, not {type(value).__name__}.")
    if minimum is not None and int(value) < minimum:
        raise InvalidParameterError(f"{name}={value!r} must be >= {minimum}.")
    return int(value)


def as_float_array(name: str, x: Any, ndim: int) -> np.ndarray:
    """Validate dtype and rank of an array-like without copying memory maps."""
    if isinstance(x, np.ndarray):
        arr = x
    elif type(x).__module__.startswith("torch"):
        arr = x.detach().cpu().numpy()
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise DtypeError(f"{name} could not be converted to a numeric array: {exc}") from exc
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise DtypeError(
            f"{name} has non-numeric dtype {arr.dtype}; pass a float array (e.g. float32)."
        )
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    if arr.ndim != ndim:
        raise ShapeMismatchError(f"{name} must be {ndim}-D, got shape {arr.shape}.")
    return arr


def _per_sample_array(name: str, value: Any, kinds: str, what: str, n: int | None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in kinds or arr.ndim != 1:
        raise DtypeError(f"{name} must be a 1-D array of {what}, got {arr.dtype} {arr.shape}.")
    if n is not None and arr.shape != (n,):
        raise ShapeMismatchError(f"{name} has shape {arr.shape}; expected one entry per sample ({n},).")
    return arr


def check_val_groups(m: int | None, val_groups: Any) -> np.ndarray | None:
    """Validate (M,) group labels (integers or strings) of the validation samples; None passes through."""
    if val_groups is None:
        return None
    return _per_sample_array("val_groups", val_groups, "iuU", "integers or strings", m)


def check_sample_arrays(n: int | None, sample_ids: Any, token_counts: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validate per-sample ids (unique integers/strings) and token counts (integers >= 0) of N samples."""
    ids = tc = None
    if sample_ids is not None:
        ids = _per_sample_array("sample_ids", sample_ids, "iuU", "integers or strings", n)
        uniq, counts = np.unique(ids, return_counts=True)
        if uniq.size != ids.size:
            raise InvalidParameterError(f"sample_ids are not unique (e.g. {uniq[counts > 1][0]!r} repeats).")
    if token_counts is not None:
        tc = _per_sample_array("token_counts", token_counts, "iu", "integers", n).astype(np.int64)
        if (tc < 0).any():
            raise InvalidParameterError("token_counts must be >= 0.")
    return ids, tc


@dataclass
class GradientStats:
    """Gradient statistics of a candidate pool of N samples.

    Attributes:
        G_flat: (r, N) flat eigen-coordinates g_ij = sqrt(k) v_j^T z_i, j in the flat set.
        a_stiff: (N,) stiff costs a_i = sum_{j stiff} lambda_j g_ij^2 >= 0.
        eigvals: (k,) eigenvalues of the sketched validation curvature, descending.
        k_star: number of stiff directions (the elbow); flat rows are directions k_star..k-1.
        G_stiff: optional (k_star, N) stiff eigen-coordinates (aggregate-budget, cosine, Taylor).
        val_grad: optional (k,) mean validation gradient in the same eigen-coordinates.
        losses: optional (N,) per-sample losses at the checkpoint.
        grad_norms: optional (N,) per-sample gradient norms (before projection).
        sample_ids: optional (N,) unique id of each sample (its dataset index or an id column;
            integers or strings): column i of G describes sample ``sample_ids[i]``.
        token_counts: optional (N,) integer tokens per sample (e.g. for a token budget,
            :class:`direct_opt.constraints.TokenBudget`).
        val_coords: optional (k, M) per-example validation gradients in the eigen-coordinates
            (plain gradients; LESS's validation features).
        adam_coords: optional (k, N) Adam update directions m̂/(√v̂+ε) of the pool samples in the
            same coordinates (LESS's training features; extracted with an optimizer state).
        val_groups: optional (M,) group label of each validation example (LESS: max over groups).
        metadata: optional per-sample arrays of length N (ids, group labels, token counts).
        config: JSON-serialisable provenance (extraction config, model fingerprint, ...).
    """

    G_flat: np.ndarray
    a_stiff: np.ndarray
    eigvals: np.ndarray | None = None
    k_star: int | None = None
    G_stiff: np.ndarray | None = None
    val_grad: np.ndarray | None = None
    losses: np.ndarray | None = None
    grad_norms: np.ndarray | None = None
    sample_ids: np.ndarray | None = None
    token_counts: np.ndarray | None = None
    val_coords: np.ndarray | None = None
    adam_coords: np.ndarray | None = None
    val_groups: np.ndarray | None = None
    metadata: dict[str, np.ndarray] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    validate: bool = field(default=True, repr=False)

    def __post_init__(self) -> None:
        self.G_flat = as_float_array("G_flat", self.G_flat, 2)
        self.a_stiff = as_float_array("a_stiff", self.a_stiff, 1)
        for name in _OPTIONAL:
            val = getattr(self, name)
            if val is not None:
                setattr(self, name, as_float_array(name, val, 2 if name in _MATRICES else 1))
        self._check_per_sample()
        for label in ("metadata", "config"):
            if not isinstance(getattr(self, label) or {}, Mapping):
                raise InvalidParameterError(f"{label} must be a dict, got {type(getattr(self, label)).__name__}.")
        bad = [k for k in dict(self.metadata or {}) if not isinstance(k, str)]
        if bad:
            raise InvalidParameterError(f"metadata keys must be strings, got {bad[0]!r} ({type(bad[0]).__name__}).")
        try:
            self.metadata = {k: np.asarray(v) for k, v in dict(self.metadata or {}).items()}
        except (ValueError, TypeError) as exc:  # ragged sequences
            raise DtypeError(f"metadata values must be arrays of length N ({exc}).") from None
        self.config = dict(self.config or {})
        if self.k_star is not None:
            self.k_star = int_scalar("k_star", self.k_star, minimum=0)
        _check_float("G_flat", self.G_flat)
        r, n = self.G_flat.shape
        if n == 0:
            raise ShapeMismatchError("G_flat has no columns: the pool is empty.")
        if self.a_stiff.shape != (n,):
            raise ShapeMismatchError(
                f"a_stiff has shape {self.a_stiff.shape} but G_flat has N={n} columns; "
                "both must describe the same samples (a_stiff needs shape (N,))."
            )
        for name in ("losses", "grad_norms"):
            val = getattr(self, name)
            if val is not None and val.shape != (n,):
                raise ShapeMismatchError(f"{name} has shape {val.shape}; expected ({n},).")
        for key, val in self.metadata.items():
            check_metadata_key(key)
            if val.shape[:1] != (n,):
                raise ShapeMismatchError(f"metadata[{key!r}] has shape {val.shape}; expected ({n},).")
            if val.dtype == object:
                raise DtypeError(
                    f"metadata[{key!r}] has dtype object; use numbers or fixed-width strings "
                    "(np.asarray(labels, dtype=str)) so it can be saved without pickle."
                )
        if self.eigvals is not None:
            if self.k_star is None:
                raise InvalidParameterError("eigvals given without k_star; pass the elbow index k_star.")
            if not 0 <= int(self.k_star) <= self.eigvals.shape[0]:
                raise InvalidParameterError(
                    f"k_star={self.k_star} must lie in [0, k={self.eigvals.shape[0]}]."
                )
            if self.eigvals.shape[0] != int(self.k_star) + r:
                raise ShapeMismatchError(
                    f"eigvals has k={self.eigvals.shape[0]} entries but k_star + r = "
                    f"{int(self.k_star)} + {r}: the flat rows must be the directions after the elbow."
                )
        if self.k_star is not None:
            self.k_star = int(self.k_star)
        if self.G_stiff is not None:
            _check_float("G_stiff", self.G_stiff)
            if self.G_stiff.shape[1] != n or (
                self.k_star is not None and self.G_stiff.shape[0] != self.k_star
            ):
                raise ShapeMismatchError(
                    f"G_stiff has shape {self.G_stiff.shape}; expected (k_star={self.k_star}, N={n})."
                )
        if self.val_grad is not None and self.eigvals is not None:
            if self.val_grad.shape != self.eigvals.shape:
                raise ShapeMismatchError(
                    f"val_grad has shape {self.val_grad.shape}; expected (k={self.eigvals.shape[0]},)."
                )
        self._check_less_fields(n)
        if self.validate:
            self._validate_values()

    def _check_less_fields(self, n: int) -> None:
        k = None if self.eigvals is None else self.eigvals.shape[0]
        if self.adam_coords is not None and (self.adam_coords.shape[1] != n or
                                             (k is not None and self.adam_coords.shape[0] != k)):
            raise ShapeMismatchError(f"adam_coords has shape {self.adam_coords.shape}; expected (k={k}, N={n}).")
        if self.val_coords is not None and k is not None and self.val_coords.shape[0] != k:
            raise ShapeMismatchError(f"val_coords has shape {self.val_coords.shape}; expected (k={k}, M).")
        if self.val_groups is not None:
            if self.val_coords is None:
                raise InvalidParameterError("val_groups given without val_coords (the per-example validation gradients).")
            self.val_groups = check_val_groups(self.val_coords.shape[1], self.val_groups)

    def _check_per_sample(self) -> None:
        n = int(np.shape(self.G_flat)[1]) if np.ndim(self.G_flat) == 2 else None
        self.sample_ids, self.token_counts = check_sample_arrays(n, self.sample_ids, self.token_counts)

    def _validate_values(self) -> None:
        check_finite("G_flat", self.G_flat)
        check_finite("a_stiff", self.a_stiff)
        for name in _OPTIONAL:
            val = getattr(self, name)
            if val is not None:
                check_finite(name, val)
        if (np.asarray(self.a_stiff) < 0).any():
            i = int(np.argmin(self.a_stiff))
            raise NegativeCostError(
                f"a_stiff[{i}] = {float(self.a_stiff[i])} < 0; stiff costs are weighted sums of "
                "squares and must be >= 0 (check the sign of the eigenvalues you used)."
            )

    # ------------------------------------------------------------------ shape
    @property
    def n(self) -> int:
        """Number of candidate samples N."""
        return int(self.G_flat.shape[1])

    @property
    def r(self) -> int:
        """Number of flat directions r = |I_flat|."""
        return int(self.G_flat.shape[0])

    def eigen_coords(self) -> np.ndarray:
        """(k, N) all eigen-coordinates, stiff rows first (needs G_stiff)."""
        if self.G_stiff is None:
            raise InvalidParameterError(
                "these stats keep no stiff coordinates (G_stiff); re-extract with the stiff "
                "coordinates stored (the default) to use whole-sketch scores."
            )
        return np.vstack([np.asarray(self.G_stiff), np.asarray(self.G_flat)])

    # ------------------------------------------------------------------- disk
    def arrays(self) -> dict[str, np.ndarray]:
        """Every stored array by file stem (metadata arrays are prefixed ``meta.``)."""
        out: dict[str, np.ndarray] = {"G_flat": self.G_flat, "a_stiff": self.a_stiff}
        for name in _OPTIONAL:
            val = getattr(self, name)
            if val is not None:
                out[name] = val
        for name in _PER_SAMPLE:
            val = getattr(self, name)
            if val is not None:
                out[name] = val
        for key, val in self.metadata.items():
            out[f"meta.{key}"] = val
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write the stats to directory ``path`` (created if needed); returns the path.

        All or nothing: the arrays and the manifest are written into a new sibling directory,
        fsynced, and swapped in with one atomic rename.  A failure at any point (a full disk,
        Ctrl-C) leaves an existing stats directory at ``path`` untouched and loadable, and removes
        the partial copy.  A directory at ``path`` holding anything but stats files
        (``manifest.json``, ``*.npy``) is refused rather than replaced.
        """
        d = Path(path)
        if d.is_symlink() and d.is_dir():  # replace the directory the link points to, keep the link
            d = d.resolve()
        _check_replaceable(d)
        d.parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_copies(d)
        tmp = Path(tempfile.mkdtemp(dir=d.parent, prefix=f".{d.name}.{os.getpid()}.", suffix=".tmp"))
        try:
            os.chmod(tmp, 0o777 & ~_UMASK)
            entries = {}
            for name, arr in self.arrays().items():
                fname = f"{name}.npy"
                digest = write_npy_atomic(tmp / fname, arr)
                entries[name] = {
                    "file": fname,
                    "shape": list(arr.shape),
                    "dtype": np.lib.format.dtype_to_descr(arr.dtype),
                    "sha256": digest,
                }
            manifest = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "n": self.n,
                "r": self.r,
                "k_star": self.k_star,
                "arrays": entries,
                "config": self.config,
            }
            write_text_atomic(tmp / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str))
            _fsync_dir(tmp)
            replace_dir(tmp, d)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = False, verify: bool = True) -> "GradientStats":
        """Load stats saved by :meth:`save`.

        Args:
            path: the stats directory.
            mmap: memory-map the arrays read-only instead of reading them into RAM.
            verify: check SHA-256 checksums (reads every byte once; turn off for huge pools
                whose files you trust) — shapes, dtypes and sizes are always checked.
        Raises:
            StatsFormatError naming the file and what is wrong.
        """
        d = Path(path)
        manifest = read_manifest(d)
        arrays: dict[str, np.ndarray] = {}
        for name, entry in manifest["arrays"].items():
            arrays[name] = load_checked_npy(d, entry, mmap=mmap, verify=verify)
        if "G_flat" not in arrays or "a_stiff" not in arrays:
            raise StatsFormatError(f"{d / MANIFEST}: the manifest lists no G_flat/a_stiff arrays.")
        meta = {k[5:]: v for k, v in arrays.items() if k.startswith("meta.")}
        kwargs = {k: v for k, v in arrays.items() if not k.startswith("meta.")}
        unknown = sorted(set(kwargs) - {"G_flat", "a_stiff", *_OPTIONAL, *_PER_SAMPLE})
        if unknown:
            raise StatsFormatError(f"{d / MANIFEST}: unknown array name(s) {unknown} in the manifest.")
        try:
            stats = cls(
                k_star=manifest.get("k_star"),
                metadata=meta,
                config=manifest.get("config", {}),
                validate=not mmap,
                **kwargs,
            )
        except InvalidInputError as exc:  # shapes, dtypes, NaN/Inf, negative costs, k_star
            raise StatsFormatError(f"{d / MANIFEST}: the stored arrays do not form valid stats ({exc})") from exc
        stats.checksums_verified = bool(verify)  # every file matched its recorded SHA-256 (none may lack one)
        return stats

    def checksum(self) -> str:
        """SHA-256 over every array (name, shape, dtype, bytes): identifies the stats in audits."""
        h = hashlib.sha256()
        for name, arr in sorted(self.arrays().items()):
            h.update(f"{name}:{arr.shape}:{arr.dtype.str};".encode())
            _hash_array(h, arr)
        return h.hexdigest()


# ---------------------------------------------------------------------- file helpers


def _hash_array(h: "hashlib._Hash", arr: np.ndarray) -> None:
    flat = np.ascontiguousarray(arr).reshape(-1) if arr.ndim else np.ascontiguousarray(arr)
    step = max(1, (1 << 24) // max(1, arr.itemsize))
    for s in range(0, flat.size, step):
        h.update(np.ascontiguousarray(flat[s : s + step]).tobytes())


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


_STATS_FILE = re.compile(r"(manifest\.json|[^/]+\.npy|\.[^/]*\.tmp)")


def _check_replaceable(d: Path) -> None:
    """``d`` may be replaced by a save: absent, or a directory of stats files only."""
    if not (d.exists() or d.is_symlink()):
        return
    if not d.is_dir():
        raise OutputPathError(f"cannot save stats to {d}: it exists and is not a directory.")
    foreign = sorted(e.name for e in d.iterdir() if not (_STATS_FILE.fullmatch(e.name) and not e.is_dir()))
    if foreign:
        raise OutputPathError(
            f"refusing to replace {d}: it holds {foreign[:5]}, which are not stats files; "
            "save to a new directory, or move those files away."
        )


def _remove_dead_copies(d: Path) -> None:
    """Remove partial copies ``.NAME.PID.*.tmp`` beside ``d`` left by saves whose process died."""
    for tmp in d.parent.glob(f".{glob_escape(d.name)}.*.tmp"):
        m = re.fullmatch(rf"\.{re.escape(d.name)}\.(\d+)\..*\.tmp", tmp.name)
        if not m or not tmp.is_dir() or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except OSError:  # alive under another user, or unknown: leave it
            pass


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL / ENOSYS / EOPNOTSUPP: file system or kernel cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(new: Path, target: Path) -> None:
    """Put the complete directory ``new`` at ``target`` in one step; an old ``target`` is removed
    afterwards.  With an atomic exchange (Linux) there is no moment without a valid ``target``;
    elsewhere the old directory is renamed aside first and restored if the second rename fails."""
    if not target.exists():
        os.rename(new, target)
    elif _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now holds the old stats
    else:
        aside = target.with_name(f".{target.name}.old.{os.getpid()}.tmp")
        os.rename(target, aside)
        try:
            os.rename(new, target)
        except BaseException:
            os.rename(aside, target)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    _fsync_dir(target.parent)


class _HashingWriter:
    """A write-only file wrapper that hashes what passes through (no second read of the file)."""

    def __init__(self, fh: Any) -> None:
        self.fh, self.sha256 = fh, hashlib.sha256()

    def write(self, data: Any) -> int:
        self.sha256.update(data)
        return self.fh.write(data)


def write_npy_atomic(path: Path, arr: np.ndarray) -> str:
    """Write ``arr`` as .npy through a temp file + fsync + rename; returns the file's SHA-256
    (hashed while writing: a multi-GB array is not read back)."""
    with atomic_file(path, "wb") as (fh, _):
        out = _HashingWriter(fh)
        np.lib.format.write_array(out, np.asanyarray(arr), allow_pickle=False)
    return out.sha256.hexdigest()


def stats_dirs_below(d: Path, max_depth: int = 5, limit: int = 3) -> list[Path]:
    """Up to ``limit`` stats directories (a manifest next to ``a_stiff.npy``) at most ``max_depth``
    levels below ``d``, e.g. the ``stats/`` of an extraction or demo run directory."""
    import os

    found: list[Path] = []
    base = len(Path(d).parts)
    for root, dirs, files in os.walk(d):
        dirs.sort()
        if MANIFEST in files and "a_stiff.npy" in files and Path(root) != Path(d):
            found.append(Path(root))
            if len(found) >= limit:
                break
        if len(Path(root).parts) - base >= max_depth:
            dirs[:] = []
    return found


def read_manifest(d: Path) -> dict[str, Any]:
    """Read and check ``d/manifest.json`` (format name and version)."""
    if "\x00" in str(d):
        raise StatsFormatError(f"{str(d)!r} contains a NUL byte, which no directory name can hold.")
    mpath = d / MANIFEST
    if not d.is_dir():
        raise StatsFormatError(f"{d} is not a directory; pass the directory written by GradientStats.save.")
    if not mpath.is_file():
        below = stats_dirs_below(d)
        hint = (f" It holds statistics in {', '.join(map(str, below))}: pass that directory (e.g. --stats {below[0]})."
                if below else "")
        raise StatsFormatError(f"{mpath} is missing: {d} is not a stats directory (or a save was interrupted).{hint}")
    if mpath.resolve().parent != d.resolve():
        raise StatsFormatError(
            f"{mpath} resolves to {mpath.resolve()}, outside the stats directory {d.resolve()}; refusing to "
            "read it (copy the real file into the directory instead of linking to it)."
        )
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StatsFormatError(f"{mpath} is not valid JSON ({exc}); the file is corrupted.") from exc
    except RecursionError:
        raise StatsFormatError(f"{mpath} is nested too deeply to be a stats manifest; the file is corrupted.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise StatsFormatError(f"{mpath} does not describe direct_opt gradient stats (format field).")
    version = manifest.get("format_version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise StatsFormatError(
            f"{mpath} has format_version {version!r}; this direct_opt reads versions {list(READABLE_VERSIONS)}. "
            "Upgrade direct_opt or re-save the stats with this version."
        )
    if not isinstance(manifest.get("arrays"), dict):
        raise StatsFormatError(f"{mpath} has no 'arrays' table.")
    return manifest


def load_checked_npy(d: Path, entry: Mapping[str, Any], mmap: bool, verify: bool) -> np.ndarray:
    """Load one manifest entry's .npy without pickle, checking location, size, shape, dtype, checksum."""
    try:
        fname = str(entry["file"])
        shape = tuple(int(s) for s in entry["shape"])
        dtype = np.dtype(np.lib.format.descr_to_dtype(entry["dtype"]))
    except Exception as exc:
        raise StatsFormatError(f"{d / MANIFEST}: malformed array entry {entry!r} ({exc}).") from exc
    path = d / fname
    root = d.resolve()
    resolved = path.resolve()
    if resolved.parent != root:
        raise StatsFormatError(
            f"{path} resolves to {resolved}, outside the stats directory {root}; refusing to read it "
            "(copy the real file into the directory instead of linking to it)."
        )
    if not path.is_file():
        raise StatsFormatError(f"{path} is missing (listed in the manifest).")
    if dtype.hasobject:
        raise StatsFormatError(f"{path}: the manifest declares an object dtype; refusing (no pickle).")
    with open(path, "rb") as fh:
        try:
            major, minor = np.lib.format.read_magic(fh)
            fmt = np.lib.format
            hdr = fmt.read_array_header_1_0(fh) if (major, minor) == (1, 0) else fmt.read_array_header_2_0(fh)
        except Exception as exc:
            raise StatsFormatError(f"{path} is not a valid .npy file ({exc}).") from exc
        offset = fh.tell()
    fshape, fortran, fdtype = hdr
    if fdtype.hasobject:
        raise StatsFormatError(f"{path} holds a pickled object array; refusing to load it (no pickle).")
    if tuple(fshape) != shape or fdtype != dtype:
        raise StatsFormatError(
            f"{path} holds shape {tuple(fshape)} dtype {fdtype}, but the manifest says shape {shape} "
            f"dtype {dtype}: the file was replaced or the manifest edited."
        )
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = path.stat().st_size
    if actual != expected:
        raise StatsFormatError(
            f"{path} has {actual} bytes but shape {shape} {dtype} needs {expected}: the file is "
            "truncated or padded (an interrupted copy?). Re-copy or re-extract it."
        )
    if verify and not (isinstance(entry.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])):
        raise StatsFormatError(
            f"{path}: the manifest records no valid SHA-256 checksum for it ({entry.get('sha256')!r}), so it cannot "
            "be verified. Load with verify=False (CLI: --no-verify) if you trust the file, and re-save the stats "
            "to record checksums."
        )
    if verify and _sha256_file(path) != entry["sha256"]:
        raise StatsFormatError(
            f"{path}: SHA-256 checksum does not match the manifest; the file was modified or corrupted."
        )
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        raise StatsFormatError(f"{path} could not be loaded without pickle ({exc}).") from exc
