"""Selection corpora built from text the machine already has (no downloads).

Three builders share one recipe (:func:`build_corpus`):

* :func:`stdlib_corpus` — the Python standard library's own sources;
* :func:`site_packages_corpus` — the sources of installed third-party packages (numpy
  always; scipy / torch / matplotlib when installed);
* :func:`c_headers_corpus` — C headers (the pool) and manual pages (validation / test,
  grouped by man section).

Recipe. The files are split into *domains*, each with an extraction kind of
:mod:`direct_opt.lm.text`: for Python sources ``docstrings`` (prose), ``comments``
(prose), and ``code:<area>`` (docstring-free code of one area/package). Samples are
non-overlapping byte windows of ``seq_len + 1`` bytes. The target domain's files are
consumed in a seeded order: first the TEST windows, then VALIDATION, then the pool and
pretraining windows — so test, validation and pool never share a file, and exact
duplicate segments never cross splits; the final disjointness of test vs everything
else is asserted on the window bytes.

The POOL mixes ``clean:<domain>`` windows from every domain (the target domain included
unless ``target_in_pool=False``) with ``degraded:<kind>`` windows:

* ``shuffled``  — a clean window with its bytes randomly permuted;
* ``truncated`` — the first 1/8..1/2 of a clean window, then NUL (0) padding;
* ``duplicate`` — a few clean windows, each repeated several times (exact copies of
  one another);
* ``random``    — uniform random bytes.

A separate clean PRETRAIN set (all domains, equal shares, file-disjoint from test and
validation) feeds the stable phase (:func:`direct_opt.lm.train.pretrain`).
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import platform
import re
import sysconfig
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import InvalidParameterError, UnknownNameError
from .text import DomainStream, SourceCache, walk_files

DEGRADED_KINDS: tuple[str, ...] = ("shuffled", "truncated", "duplicate", "random")
PAD_BYTE = 0

#: standard-library areas (top-level packages; "core" also takes the root modules)
STDLIB_AREAS: dict[str, tuple[str, ...]] = {
    "core": ("collections", "re", "importlib", "logging", "zoneinfo", "tomllib", "sqlite3",
             "dbm", "ctypes", "curses", "json"),
    "async": ("asyncio", "concurrent", "multiprocessing"),
    "web": ("email", "http", "urllib", "xml", "html", "xmlrpc", "wsgiref"),
    "tools": ("idlelib", "tkinter", "turtledemo", "lib2to3", "distutils", "unittest", "venv",
              "ensurepip"),
}
SITE_PACKAGES_DEFAULT: tuple[str, ...] = ("numpy", "scipy", "torch", "matplotlib")

PRESETS: dict[str, dict[str, int]] = {
    "quick": {"n_pool": 256, "n_val": 32, "n_test": 64, "n_pretrain": 1024},
    "default": {"n_pool": 2000, "n_val": 128, "n_test": 512, "n_pretrain": 8192},
}


@dataclass
class Corpus:
    """A candidate pool, a target-domain validation set and a disjoint test set.

    All sample tensors are LongTensor (·, L) of byte values with L = seq_len + 1.

    Attributes:
        pool: (N, L) candidates to select from.
        pool_groups: (N,) str, ``"clean:<domain>"`` or ``"degraded:<kind>"``.
        pool_ids: (N,) str, unique provenance ids (``group/relpath@offset``, ...).
        val: (M, L) validation windows from ``target_domain``.
        test: (T, L) held-out windows from ``target_domain`` (file-disjoint from pool
            and val; no window equal to any pool/val/pretrain window).
        target_domain: the domain name of val/test, e.g. ``"docstrings"``.
        info: provenance: source, roots, versions, domains, group counts, seed, timings.
        pretrain: (P, L) clean windows of all domains for the stable (pretraining) phase.
        val_groups: (M,) str group label of each validation window (the validation *tasks*,
            e.g. the man section ``"man3"``), or None for one validation task.
    """

    pool: Tensor
    pool_groups: np.ndarray
    pool_ids: np.ndarray
    val: Tensor
    test: Tensor
    target_domain: str
    info: dict
    pretrain: Tensor = field(default_factory=lambda: torch.empty(0, 0, dtype=torch.long))
    val_groups: np.ndarray | None = None

    @property
    def seq_len(self) -> int:
        """Model context T (samples are T+1 bytes)."""
        return int(self.pool.shape[1]) - 1

    @property
    def groups(self) -> list[str]:
        """Distinct pool groups, sorted."""
        return sorted(set(self.pool_groups.tolist()))

    def group_mask(self, prefix: str) -> np.ndarray:
        """Boolean (N,) mask of pool samples whose group starts with ``prefix``."""
        return np.char.startswith(self.pool_groups.astype(str), prefix)


def _resolve_sizes(quick: bool, **given: int | None) -> dict[str, int]:
    preset = PRESETS["quick" if quick else "default"]
    out = {k: int(v) if v is not None else preset[k] for k, v in given.items()}
    for k, v in out.items():
        if v < 0 or (k != "n_pretrain" and v == 0):
            raise InvalidParameterError(f"{k}={v} must be positive (n_pretrain may be 0).")
    return out


def _split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal non-negative ints (larger ones first)."""
    base, rem = divmod(total, parts)
    return [base + (1 if i < rem else 0) for i in range(parts)]


def _child_rng(seed: int, name: str) -> np.random.Generator:
    """Independent generator per (seed, name); stable across processes (crc32, not hash)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]))


def _degrade(kind: str, src: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Degraded copies of clean windows ``src`` (n, L) uint8 -> (n, L) uint8."""
    n, L = src.shape
    if kind == "shuffled":
        return np.stack([row[rng.permutation(L)] for row in src]) if n else src.copy()
    if kind == "truncated":
        out = np.full_like(src, PAD_BYTE)
        keep = rng.integers(max(1, L // 8), max(2, L // 2) + 1, size=n)
        for i, r in enumerate(keep):
            out[i, :r] = src[i, :r]
        return out
    if kind == "random":
        return rng.integers(0, 256, size=(n, L), dtype=np.uint8)
    raise UnknownNameError(f"unknown degraded kind {kind!r}; known: {list(DEGRADED_KINDS)}")


def _rows(arr: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in arr}


#: domain name -> (extraction kind of :mod:`direct_opt.lm.text`, files of the domain)
DomainSpec = dict[str, tuple[str, list[Path]]]


def python_domains(sources: dict[str, list[Path]]) -> DomainSpec:
    """The domains of a Python-source corpus: ``docstrings`` and ``comments`` over the union
    of all areas' files, then one ``code:<area>`` per area with files (``sources``: area -> files)."""
    all_files = sorted({p for files in sources.values() for p in files})
    spec: DomainSpec = {"docstrings": ("docstrings", all_files), "comments": ("comments", all_files)}
    for area, files in sources.items():
        if files:
            spec[f"code:{area}"] = ("code", files)
    return spec


def build_corpus(
    spec: DomainSpec,
    root_of_path: dict[Path, str],
    *,
    seed: int,
    n_pool: int,
    n_val: int,
    n_test: int,
    n_pretrain: int,
    seq_len: int,
    target_domain: str,
    clean_frac: float,
    degraded_kinds: Sequence[str],
    target_in_pool: bool,
    file_cap: int | None,
    domains: Sequence[str] | None,
    info: dict,
    progress: bool = False,
    val_group_of: Callable[[str], str] | None = None,
) -> Corpus:
    """Shared recipe behind :func:`stdlib_corpus`, :func:`site_packages_corpus` and
    :func:`c_headers_corpus`.

    ``spec`` maps each domain name to its extraction kind and files (e.g.
    :func:`python_domains`); ``root_of_path`` names each file in ids and provenance. See the
    module docstring for the recipe. ``val_group_of`` maps the name of a validation window's
    source file to its group label (``Corpus.val_groups``; None: no groups).
    ``progress=True`` shows a progress bar counting the source files read.
    """
    t0 = time.perf_counter()
    L = seq_len + 1
    if not 0.0 <= clean_frac <= 1.0:
        raise InvalidParameterError(f"clean_frac={clean_frac} must lie in [0, 1].")
    for k in degraded_kinds:
        if k not in DEGRADED_KINDS:
            raise UnknownNameError(f"unknown degraded kind {k!r}; known: {list(DEGRADED_KINDS)}")
    spec = {d: (kind, files) for d, (kind, files) in spec.items() if files}
    if domains is not None:
        unknown = [d for d in domains if d not in spec]
        if unknown:
            raise UnknownNameError(f"unknown domain(s) {unknown}; available here: {list(spec)}")
        spec = {d: spec[d] for d in domains}
    if len(spec) < 2:
        raise InvalidParameterError(f"need at least 2 domains, found {list(spec)}.")
    if target_domain not in spec:
        raise UnknownNameError(f"target_domain={target_domain!r} is not a domain; choose from {list(spec)}.")

    pool_domains = [d for d in spec if target_in_pool or d != target_domain]
    n_clean = int(round(n_pool * clean_frac)) if degraded_kinds else n_pool
    clean_counts = dict(zip(pool_domains, _split(n_clean, len(pool_domains))))
    kind_counts = dict(zip(degraded_kinds, _split(n_pool - n_clean, max(1, len(degraded_kinds)))))
    n_dup = kind_counts.get("duplicate", 0)
    n_dup_distinct = max(1, n_dup // 8) if n_dup else 0
    n_src = kind_counts.get("shuffled", 0) + kind_counts.get("truncated", 0) + n_dup_distinct
    src_counts = dict(zip(pool_domains, _split(n_src, len(pool_domains))))
    pre_counts = dict(zip(spec, _split(n_pretrain, len(spec))))
    margin = lambda n: n + max(4, n // 16) if n else 0  # noqa: E731  (spare windows to filter)

    need_bytes = {
        d: L * (margin(clean_counts.get(d, 0)) + margin(src_counts.get(d, 0)) + margin(pre_counts[d])
                + (n_test + margin(n_val) if d == target_domain else 0))
        for d in spec
    }
    bar = tqdm(desc="corpus (source files read)", unit="file", disable=not progress, dynamic_ncols=True)
    cache = SourceCache(bar)
    streams = {}
    for d, (kind, files) in spec.items():
        cap = file_cap or max(512, int(2.0 * need_bytes[d] / max(1, len(files))) + 1)
        streams[d] = DomainStream(d, kind, list(files), root_of_path.__getitem__, cache,
                                  _child_rng(seed, "files/" + d), file_cap=cap)

    # 1) target domain: test first, then validation (file-disjoint by construction)
    tgt = streams[target_domain]
    test, test_src = tgt.take(n_test, L)
    forbidden = _rows(test)
    val_all, val_src = tgt.take(margin(n_val), L)
    keep = [i for i, r in enumerate(val_all) if r.tobytes() not in forbidden][:n_val]
    if len(keep) < n_val:
        raise InvalidParameterError("could not find enough validation windows distinct from test; lower n_val.")
    val = val_all[keep]
    forbidden |= _rows(val)

    def take_clean(d: str, n: int) -> tuple[np.ndarray, list[str]]:
        if n == 0:
            return np.zeros((0, L), np.uint8), []
        arr, ids = streams[d].take(margin(n), L)
        ok = [i for i, r in enumerate(arr) if r.tobytes() not in forbidden][:n]
        if len(ok) < n:
            raise InvalidParameterError(f"domain {d!r}: too many windows collide with test/val; lower n_pool.")
        return arr[ok], [ids[i] for i in ok]

    # 2) pool: clean windows, then degraded sources, per domain
    rows: list[np.ndarray] = []
    groups: list[str] = []
    ids: list[str] = []
    src_rows, src_ids = [], []
    for d in pool_domains:
        arr, sid = take_clean(d, clean_counts[d])
        rows.append(arr)
        groups += [f"clean:{d}"] * len(arr)
        ids += [f"clean:{d}/{s}" for s in sid]
        arr, sid = take_clean(d, src_counts[d])
        src_rows.append(arr)
        src_ids += [f"{d}/{s}" for s in sid]
    src = np.concatenate(src_rows) if src_rows else np.zeros((0, L), np.uint8)
    src_order = _child_rng(seed, "degraded-sources").permutation(len(src))
    src, src_ids = src[src_order], [src_ids[i] for i in src_order]
    drng = _child_rng(seed, "degrade")
    cursor = 0
    for kind in degraded_kinds:
        n = kind_counts[kind]
        if n == 0:
            continue
        if kind == "duplicate":
            base, base_ids = src[cursor:cursor + n_dup_distinct], src_ids[cursor:cursor + n_dup_distinct]
            cursor += n_dup_distinct
            which = np.arange(n) % n_dup_distinct
            rows.append(base[which])
            ids += [f"degraded:duplicate/{i}<{base_ids[w]}" for i, w in enumerate(which)]
        elif kind == "random":
            rows.append(_degrade(kind, np.zeros((n, L), np.uint8), drng))
            ids += [f"degraded:random/{i}" for i in range(n)]
        else:
            part, part_ids = src[cursor:cursor + n], src_ids[cursor:cursor + n]
            cursor += n
            rows.append(_degrade(kind, part, drng))
            ids += [f"degraded:{kind}/{i}<{s}" for i, s in enumerate(part_ids)]
        groups += [f"degraded:{kind}"] * n
    pool = np.concatenate(rows)
    order = _child_rng(seed, "pool-order").permutation(len(pool))
    pool, groups_arr, ids_arr = pool[order], np.asarray(groups)[order], np.asarray(ids)[order]

    # 3) pretraining set: fresh files of every domain
    pre_rows = [take_clean(d, pre_counts[d])[0] for d in spec]
    pretrain = np.concatenate(pre_rows) if pre_rows else np.zeros((0, L), np.uint8)
    pretrain = pretrain[_child_rng(seed, "pretrain-order").permutation(len(pretrain))]

    # 4) invariants
    test_rows = _rows(test)
    assert pool.shape == (n_pool, L) and len(groups_arr) == n_pool == len(ids_arr)
    assert len(set(ids_arr.tolist())) == n_pool, "pool ids must be unique"
    assert not test_rows & _rows(pool), "test windows overlap the pool"
    assert not test_rows & _rows(val), "test windows overlap validation"
    assert not test_rows & _rows(pretrain), "test windows overlap pretraining data"

    counts = {g: int((groups_arr == g).sum()) for g in sorted(set(groups_arr.tolist()))}
    val_groups = None
    if val_group_of is not None:
        val_groups = np.asarray([val_group_of(val_src[i].rsplit("@", 1)[0]) for i in keep]).astype(str)
        info = {**info, "val_group_counts": {str(g): int(c) for g, c in zip(*np.unique(val_groups, return_counts=True))}}
    info = dict(info)
    info.update(
        seed=int(seed), seq_len=int(seq_len), target_domain=target_domain, domains=list(spec),
        pool_domains=pool_domains, degraded_kinds=list(degraded_kinds), clean_frac=clean_frac,
        target_in_pool=target_in_pool, group_counts=counts,
        n_pool=n_pool, n_val=n_val, n_test=n_test, n_pretrain=int(len(pretrain)),
        files_available={d: len(f) for d, (_, f) in spec.items()},
        files_used={d: s.files_used for d, s in streams.items()},
        test_sources=sorted({s.split("@")[0] for s in test_src}),
        val_sources=sorted({val_src[i].split("@")[0] for i in keep}),
        build_seconds=round(time.perf_counter() - t0, 3),
    )
    bar.close()
    as_long = lambda a: torch.from_numpy(np.ascontiguousarray(a)).long()  # noqa: E731
    return Corpus(
        pool=as_long(pool), pool_groups=groups_arr, pool_ids=ids_arr, val=as_long(val),
        test=as_long(test), target_domain=target_domain, info=info, pretrain=as_long(pretrain),
        val_groups=val_groups,
    )


def _common_kwargs(quick: bool, n_pool: int | None, n_val: int | None, n_test: int | None,
                   n_pretrain: int | None) -> dict[str, int]:
    return _resolve_sizes(quick, n_pool=n_pool, n_val=n_val, n_test=n_test, n_pretrain=n_pretrain)


def stdlib_corpus(
    seed: int = 0,
    *,
    quick: bool = False,
    n_pool: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    n_pretrain: int | None = None,
    seq_len: int = 64,
    target_domain: str = "docstrings",
    domains: Sequence[str] | None = None,
    clean_frac: float = 0.75,
    degraded_kinds: Sequence[str] = DEGRADED_KINDS,
    target_in_pool: bool = True,
    file_cap: int | None = None,
    progress: bool = False,
) -> Corpus:
    """Corpus from the Python standard library sources (``sysconfig`` ``stdlib`` path).

    Domains: ``docstrings``, ``comments``, ``code:core`` (root modules + a few small
    packages), ``code:async``, ``code:web``, ``code:tools`` (areas missing from this
    Python are dropped). Sizes default to the preset (``quick``: 256/32/64/1024 for
    pool/val/test/pretrain; default: 2000/128/512/8192). ``file_cap`` bytes per file
    (default: adaptive, >= 512) bounds how much one file contributes. Deterministic
    given ``seed`` and the Python version.
    """
    sizes = _common_kwargs(quick, n_pool, n_val, n_test, n_pretrain)
    root = Path(sysconfig.get_paths()["stdlib"])
    sources: dict[str, list[Path]] = {}
    for area, pkgs in STDLIB_AREAS.items():
        files = [f for p in pkgs for f in walk_files(root / p)]
        if area == "core":
            files += [f for f in walk_files(root, recursive=False)
                      if not f.name.startswith(("_sysconfigdata", "__phello", "__hello", "this."))]
        sources[area] = sorted(files)
    root_of = {f: str(f.relative_to(root)) for fs in sources.values() for f in fs}
    info = {"source": "stdlib", "root": str(root), "python": platform.python_version(),
            "areas": {a: list(p) for a, p in STDLIB_AREAS.items()}}
    return build_corpus(
        python_domains(sources), root_of, seed=seed, seq_len=seq_len, target_domain=target_domain,
        clean_frac=clean_frac, degraded_kinds=tuple(degraded_kinds), target_in_pool=target_in_pool,
        file_cap=file_cap, domains=domains, info=info, progress=progress, **sizes,
    )


def _package_dir(name: str) -> Path | None:
    """Directory of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def site_packages_corpus(
    seed: int = 0,
    *,
    quick: bool = False,
    packages: Sequence[str] = SITE_PACKAGES_DEFAULT,
    n_pool: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    n_pretrain: int | None = None,
    seq_len: int = 64,
    target_domain: str = "docstrings",
    domains: Sequence[str] | None = None,
    clean_frac: float = 0.75,
    degraded_kinds: Sequence[str] = DEGRADED_KINDS,
    target_in_pool: bool = True,
    file_cap: int | None = None,
    progress: bool = False,
) -> Corpus:
    """Corpus from installed third-party package sources (located with ``find_spec``).

    Domains: ``docstrings``, ``comments`` (across all found packages) and one
    ``code:<pkg>`` per found package. numpy is required; the other ``packages`` are
    used when installed and skipped otherwise (``info["packages"]`` records which, with
    versions), so the build always works where numpy does; the exact text depends on
    the installed versions. Other arguments as in :func:`stdlib_corpus`.
    """
    sizes = _common_kwargs(quick, n_pool, n_val, n_test, n_pretrain)
    names = list(dict.fromkeys(["numpy", *packages]))
    sources: dict[str, list[Path]] = {}
    root_of: dict[Path, str] = {}
    found: dict[str, str] = {}
    for name in names:
        d = _package_dir(name)
        if d is None:
            if name == "numpy":
                raise InvalidParameterError("numpy is not installed; site_packages_corpus needs it.")
            continue
        files = walk_files(d)
        if not files:
            continue
        sources[name] = files
        for f in files:
            root_of[f] = f"{name}/{f.relative_to(d)}"
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            found[name] = "unknown"
    info = {"source": "site-packages", "packages": found,
            "purelib": sysconfig.get_paths()["purelib"], "python": platform.python_version()}
    return build_corpus(
        python_domains(sources), root_of, seed=seed, seq_len=seq_len, target_domain=target_domain,
        clean_frac=clean_frac, degraded_kinds=tuple(degraded_kinds), target_in_pool=target_in_pool,
        file_cap=file_cap, domains=domains, info=info, progress=progress, **sizes,
    )


#: areas of /usr/include by top directory ("" = a header at the root: mostly the C library,
#: plus single-header libraries such as zlib.h); a multiarch directory (x86_64-linux-gnu, ...)
#: is classified by the directory inside it; any other top directory is ``other``
C_HEADER_AREAS: dict[str, tuple[str, ...]] = {
    "libc": ("", "arpa", "bits", "gnu", "net", "netash", "netatalk", "netax25", "neteconet", "netinet",
             "netipx", "netiucv", "netpacket", "netrom", "netrose", "nfs", "protocols", "rpc", "rpcsvc",
             "scsi", "sys"),
    "linux": ("linux", "asm", "asm-generic", "drm", "misc", "mtd", "rdma", "sound", "video", "xen"),
    "graphics": ("X11", "GL", "GLES", "GLES2", "GLES3", "EGL", "KHR", "vulkan", "xcb", "freetype2", "fontconfig",
                 "cairo", "pixman-1", "harfbuzz", "libpng", "libpng16", "libdrm", "pango-1.0", "gdk-pixbuf-2.0"),
}
#: top directories left out: C++ trees (not C) and vendored copies of other headers
C_HEADER_SKIP: tuple[str, ...] = ("c++", "llvm-*", "llvm-c-*", "node")
MAN_SECTIONS: tuple[str, ...] = tuple(f"man{s}" for s in range(1, 9))
_MULTIARCH = re.compile(r"^[a-z0-9_]+-linux-[a-z0-9_]+$")


def header_area(rel: Path) -> str | None:
    """Area of a header path relative to the include directory (None: skipped, see C_HEADER_SKIP)."""
    parts = rel.parts
    if len(parts) > 1 and _MULTIARCH.match(parts[0]):
        parts = parts[1:]
    top = parts[0] if len(parts) > 1 else ""
    if any(fnmatch.fnmatchcase(top, pat) for pat in C_HEADER_SKIP):
        return None
    return next((area for area, tops in C_HEADER_AREAS.items() if top in tops), "other")


def c_headers_corpus(
    seed: int = 0,
    *,
    quick: bool = False,
    include_dir: str | Path = "/usr/include",
    man_dir: str | Path = "/usr/share/man",
    n_pool: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    n_pretrain: int | None = None,
    seq_len: int = 64,
    target_domain: str = "man",
    domains: Sequence[str] | None = None,
    clean_frac: float = 0.75,
    degraded_kinds: Sequence[str] = DEGRADED_KINDS,
    target_in_pool: bool = False,
    file_cap: int | None = None,
    progress: bool = False,
) -> Corpus:
    """Corpus from C headers (the pool's clean part) and manual pages (validation / test).

    Domains: ``comments`` (C comments of all headers), ``code:<area>`` (comment-free header
    code of one area of ``include_dir``: ``libc``, ``linux``, ``graphics``, ``other``; see
    :data:`C_HEADER_AREAS`; C++ trees and vendored copies in :data:`C_HEADER_SKIP` are left
    out) and ``man`` (plain text of the gzipped roff pages in ``man_dir/man1`` ..
    ``man8``; language subdirectories such as ``man_dir/de`` are not read). Symbolic links
    are skipped (they repeat another file). By default the man pages are the target domain
    and stay out of the pool (``target_in_pool=False``): the pool holds header text only,
    the validation and test windows are man pages, and pretraining sees every domain.
    ``val_groups`` is the man section of each validation window's page (``"man1"``, ...)
    when ``target_domain="man"``, else None. Other arguments as in :func:`stdlib_corpus`;
    deterministic given ``seed`` and the files on the machine.

    Raises:
        InvalidParameterError: ``include_dir`` / ``man_dir`` missing or without usable files,
            or too little text for the sizes asked for (the message names the directory).
    """
    sizes = _common_kwargs(quick, n_pool, n_val, n_test, n_pretrain)
    inc, man = Path(include_dir), Path(man_dir)
    for path, what, opt in ((inc, "C headers (.h)", "include_dir"), (man, "manual pages (man1..man8)", "man_dir")):
        if not path.is_dir():
            raise InvalidParameterError(f"{opt}={str(path)!r} is not a directory; the c-headers corpus reads its "
                                        f"{what} from it. Pass {opt}=<directory> or use another corpus.")
    sources: dict[str, list[Path]] = {area: [] for area in (*C_HEADER_AREAS, "other")}
    root_of: dict[Path, str] = {}
    for f in walk_files(inc, suffixes=(".h",)):
        area = header_area(f.relative_to(inc))
        if area is not None and not f.is_symlink():
            sources[area].append(f)
            root_of[f] = str(f.relative_to(inc))
    pages = [f for sec in MAN_SECTIONS for f in walk_files(man / sec, suffixes=(".gz",), recursive=False)
             if not f.is_symlink()]
    root_of.update({f: f"{f.parent.name}/{f.name}" for f in pages})
    headers = sorted(f for files in sources.values() for f in files)
    if not headers:
        raise InvalidParameterError(f"include_dir={str(inc)!r} holds no usable .h files; pass include_dir=<a "
                                    "directory of C headers>.")
    if not pages:
        raise InvalidParameterError(f"man_dir={str(man)!r} holds no gzipped manual pages in man1..man8 (e.g. "
                                    f"man1/ls.1.gz); pass man_dir=<a man directory>.")
    spec: DomainSpec = {"comments": ("c-comments", headers)}
    spec.update({f"code:{area}": ("c-code", files) for area, files in sources.items()})
    spec["man"] = ("man", pages)
    info = {"source": "c-headers", "include_dir": str(inc), "man_dir": str(man),
            "areas": {a: list(t) for a, t in C_HEADER_AREAS.items()}, "skipped": list(C_HEADER_SKIP)}
    try:
        return build_corpus(
            spec, root_of, seed=seed, seq_len=seq_len, target_domain=target_domain, clean_frac=clean_frac,
            degraded_kinds=tuple(degraded_kinds), target_in_pool=target_in_pool, file_cap=file_cap,
            domains=domains, info=info, progress=progress, **sizes,
            val_group_of=(lambda name: name.split("/", 1)[0]) if target_domain == "man" else None,
        )
    except InvalidParameterError as exc:
        if "ran out of text" not in str(exc):
            raise
        raise InvalidParameterError(f"{exc} The headers come from include_dir={str(inc)!r} and the manual pages "
                                    f"from man_dir={str(man)!r}: point them at larger directories.") from None
