"""Finding Python source files and extracting text *domains* from them.

Three extraction kinds, all deterministic and download-free:

* ``docstrings`` — prose: every module/class/function docstring (``ast.get_docstring``);
* ``comments``   — prose: blocks of consecutive ``#`` comment lines, ``#`` stripped;
* ``code``       — code bodies: ``ast.unparse`` of each top-level statement with every
  docstring removed (so no comments and no docstrings: pure code).

Each extractor maps one file to a list of text *segments*; :class:`DomainStream`
concatenates segments of files in a seeded order and cuts byte windows.
"""

from __future__ import annotations

import ast
import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..errors import InvalidParameterError

#: directory names never descended into (tests, caches, vendored installs)
SKIP_DIRS = frozenset(
    {"test", "tests", "idle_test", "testing_data", "site-packages", "dist-packages",
     "__pycache__", "lib-dynload", "encodings", "pydoc_data", "node_modules"}
)
_COMMENT_RE = re.compile(r"^[ \t]*#(.*)$")
MIN_SEGMENT_CHARS = 20


def walk_py_files(root: Path, skip_dirs: Iterable[str] = SKIP_DIRS, recursive: bool = True) -> list[Path]:
    """Sorted ``.py`` files under ``root`` (tests, caches and ``test_*.py`` skipped)."""
    skip = set(skip_dirs)
    root = Path(root)
    if root.is_file():
        return [root] if root.suffix == ".py" else []
    out: list[Path] = []
    if not root.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in skip and not d.startswith(("test_", ".")) and not d.startswith("config-")
        )
        if not recursive:
            dirnames[:] = []
        for name in sorted(filenames):
            if name.endswith(".py") and not name.startswith(("test_", "conftest")):
                out.append(Path(dirpath) / name)
    return sorted(out)


class SourceCache:
    """Per-build cache of (source text, AST) so a file parsed for one domain is reused."""

    def __init__(self, bar: Any = None) -> None:
        self._cache: dict[Path, tuple[str, ast.Module | None]] = {}
        self._bar = bar  # a progress bar counting the files read (optional)

    def get(self, path: Path, parse: bool = True) -> tuple[str, ast.Module | None]:
        """(text, tree); tree is None when the file does not parse (or ``parse=False``)."""
        text, tree = self._cache.get(path, (None, None))
        if text is None:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                text = ""
            if self._bar is not None:
                self._bar.update()
        if parse and tree is None and text:
            try:
                tree = ast.parse(text)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                tree = None
        self._cache[path] = (text, tree)
        return text, tree


def _rotate(segs: list[str], start: float) -> list[str]:
    k = int(start * len(segs))
    return segs[k:] + segs[:k]


def _docstrings(text: str, tree: ast.Module | None, budget: int, start: float) -> list[str]:
    if tree is None:
        return []
    out = []
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for node in ast.walk(tree):
        if isinstance(node, nodes):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) >= MIN_SEGMENT_CHARS:
                out.append(doc)
    return _rotate(out, start)


def _comments(text: str, tree: ast.Module | None, budget: int, start: float) -> list[str]:
    out, block = [], []
    for line in text.splitlines():
        m = _COMMENT_RE.match(line)
        body = m.group(1) if m else None
        if body is not None and not body.startswith(("!", " -*-", "-*-", " type:", " noqa")):
            block.append(body[1:] if body.startswith(" ") else body)
            continue
        if block:
            s = "\n".join(block).strip()
            if len(s) >= MIN_SEGMENT_CHARS:
                out.append(s)
            block = []
    if block:
        s = "\n".join(block).strip()
        if len(s) >= MIN_SEGMENT_CHARS:
            out.append(s)
    return _rotate(out, start)


def _strip_docstrings(tree: ast.Module) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]


def _code(text: str, tree: ast.Module | None, budget: int, start: float) -> list[str]:
    if tree is None:
        return []
    out, used = [], 0
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # module docstring
    for stmt in _rotate(body, start):
        stmt = copy.deepcopy(stmt)  # the cached tree is shared: strip a copy
        wrapper = ast.Module(body=[stmt], type_ignores=[])
        _strip_docstrings(wrapper)
        try:
            s = ast.unparse(wrapper)
        except (ValueError, RecursionError):  # pragma: no cover - exotic syntax
            continue
        if len(s) >= MIN_SEGMENT_CHARS:
            out.append(s)
            used += len(s)
            if used >= budget:
                break
    return out


EXTRACTORS: dict[str, Callable[..., list[str]]] = {
    "docstrings": _docstrings,
    "comments": _comments,
    "code": _code,
}


@dataclass
class DomainStream:
    """Seeded, file-ordered stream of one domain's bytes, consumed role after role.

    Files are visited in a seeded permutation; each file contributes at most
    ``file_cap`` bytes, starting at a seeded random segment (so small caps do not
    favour file headers such as imports and module docstrings); segments already seen
    (in *any* earlier role) are skipped, so exact duplicates never cross roles. Each :meth:`take` consumes whole files, hence
    two calls (e.g. test then pool) never share a file.
    """

    name: str
    kind: str
    files: list[Path]
    root_of: Callable[[Path], str]
    cache: SourceCache
    rng: np.random.Generator
    file_cap: int = 512
    pos: int = 0
    seen: set[str] = field(default_factory=set)
    files_used: int = 0

    def __post_init__(self) -> None:
        if self.kind not in EXTRACTORS:
            raise InvalidParameterError(f"unknown extraction kind {self.kind!r}; known: {sorted(EXTRACTORS)}")
        order = self.rng.permutation(len(self.files))
        self.files = [self.files[i] for i in order]

    def take(self, n: int, window: int) -> tuple[np.ndarray, list[str]]:
        """Next ``n`` non-overlapping windows: (uint8 array (n, window), source ids)."""
        buf = bytearray()
        starts: list[tuple[int, str]] = []
        extract = EXTRACTORS[self.kind]
        while len(buf) // window < n:
            if self.pos >= len(self.files):
                raise InvalidParameterError(
                    f"domain {self.name!r} ran out of text after {len(self.files)} files "
                    f"({len(buf) // window} of {n} windows for this split); lower n_pool / "
                    "n_pretrain / n_test, or drop this domain."
                )
            path = self.files[self.pos]
            self.pos += 1
            text, tree = self.cache.get(path, parse=self.kind != "comments")
            segs = extract(text, tree, self.file_cap, float(self.rng.random()))
            chunk = bytearray()
            for s in segs:
                if s in self.seen:
                    continue
                self.seen.add(s)
                chunk += s.encode("utf-8") + b"\n\n"
                if len(chunk) >= self.file_cap:
                    break
            if chunk:
                if len(chunk) > self.file_cap:
                    chunk = chunk[: self.file_cap] + b"\n\n"
                starts.append((len(buf), self.root_of(path)))
                buf += chunk
                self.files_used += 1
        arr = np.frombuffer(bytes(buf[: n * window]), dtype=np.uint8).reshape(n, window)
        ids, j = [], 0
        for w in range(n):
            off = w * window
            while j + 1 < len(starts) and starts[j + 1][0] <= off:
                j += 1
            ids.append(f"{starts[j][1]}@{off - starts[j][0]}")
        return arr.copy(), ids
