"""Finding source files and extracting text *domains* from them.

Extraction kinds, all deterministic and download-free. Python sources (``.py``):

* ``docstrings`` — prose: every module/class/function docstring (``ast.get_docstring``);
* ``comments``   — prose: blocks of consecutive ``#`` comment lines, ``#`` stripped;
* ``code``       — code bodies: ``ast.unparse`` of each top-level statement with every
  docstring removed (so no comments and no docstrings: pure code).

C headers (``.h``) and manual pages (gzipped roff, ``.gz``):

* ``c-comments`` — prose: ``/* ... */`` blocks and runs of ``//`` lines, the comment
  markers and the leading ``*`` decoration stripped;
* ``c-code``     — the header with every comment removed, cut at blank lines;
* ``man``        — roff turned into plain text: comments, macro definitions and layout
  requests dropped, the text of font/heading macros kept, escapes resolved; one segment
  per paragraph.

Each extractor maps one file to a list of text *segments* (those shorter than
``MIN_SEGMENT_CHARS`` are dropped); :class:`DomainStream` concatenates segments of files
in a seeded order and cuts byte windows.
"""

from __future__ import annotations

import ast
import copy
import gzip
import os
import re
import textwrap
import zlib
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


def walk_files(root: Path, suffixes: tuple[str, ...] = (".py",), skip_dirs: Iterable[str] = SKIP_DIRS,
               recursive: bool = True) -> list[Path]:
    """Sorted files under ``root`` whose names end with one of ``suffixes`` (default ``.py``).

    Directories in ``skip_dirs``, hidden ones and ``test_*`` / ``config-*`` ones are not
    descended into; ``test_*`` and ``conftest*`` files are skipped.
    """
    skip = set(skip_dirs)
    suffixes = tuple(suffixes)
    root = Path(root)
    if root.is_file():
        return [root] if root.name.endswith(suffixes) else []
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
            if name.endswith(suffixes) and not name.startswith(("test_", "conftest")):
                out.append(Path(dirpath) / name)
    return sorted(out)


def read_source(path: Path) -> str:
    """Text of a source file (``.gz`` files are gunzipped); "" when unreadable or not UTF-8."""
    try:
        with (gzip.open if path.name.endswith(".gz") else open)(path, "rt", encoding="utf-8") as fh:
            return fh.read()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError):
        return ""


class SourceCache:
    """Per-build cache of (source text, AST) so a file parsed for one domain is reused."""

    def __init__(self, bar: Any = None) -> None:
        self._cache: dict[Path, tuple[str, ast.Module | None]] = {}
        self._bar = bar  # a progress bar counting the files read (optional)

    def get(self, path: Path, parse: bool = True) -> tuple[str, ast.Module | None]:
        """(text, tree); tree is None when the file does not parse (or ``parse=False``)."""
        text, tree = self._cache.get(path, (None, None))
        if text is None:
            text = read_source(path)
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


# ------------------------------------------------------------------------- C headers
#: a C comment or a string / character literal (literals are matched so that comment
#: markers inside them are left alone)
_C_TOKEN_RE = re.compile(r'//[^\n]*|/\*.*?(?:\*/|\Z)|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
_DECORATION_RE = re.compile(r"^[\s*=#/_~+-]*$")  # a line of comment art only


def _keep(segs: list[str], start: float) -> list[str]:
    """Segments of at least MIN_SEGMENT_CHARS, rotated to start at fraction ``start``."""
    return _rotate([s for s in segs if len(s) >= MIN_SEGMENT_CHARS], start)


def _c_comment_text(token: str) -> str:
    """Body of one ``/* ... */`` comment: markers, leading ``*`` decoration and art lines removed."""
    body = token[2:-2] if token.endswith("*/") and len(token) >= 4 else token[2:]
    first, *rest = body.split("\n")
    rest = textwrap.dedent("\n".join(re.sub(r"^\s*\*+ ?", "", ln) for ln in rest)).split("\n") if rest else []
    lines = [ln.rstrip() for ln in [first.lstrip("*!").strip(), *rest]]
    lines[-1] = lines[-1].rstrip("*").rstrip()  # closing art such as `****/`
    return "\n".join(ln for ln in lines if not (ln.strip() and _DECORATION_RE.match(ln))).strip()


def _c_comments(text: str, tree: ast.Module | None, budget: int, start: float) -> list[str]:
    segs: list[str] = []
    run: list[str] = []  # consecutive // lines
    last_line = -2
    for m in _C_TOKEN_RE.finditer(text):
        tok = m.group()
        if tok.startswith("//"):
            line = text.count("\n", 0, m.start())
            if run and line != last_line + 1:
                segs.append(textwrap.dedent("\n".join(run)).strip())
                run = []
            body = tok[2:].lstrip("/!")
            run.append(body[1:] if body.startswith(" ") else body)
            last_line = line
        elif tok.startswith("/*"):
            segs.append(_c_comment_text(tok))
    if run:
        segs.append(textwrap.dedent("\n".join(run)).strip())
    return _keep(segs, start)


def _c_code(text: str, tree: ast.Module | None, budget: int, start: float) -> list[str]:
    def strip(m: re.Match) -> str:
        tok = m.group()
        return "\n" * tok.count("\n") if tok.startswith("/") else tok  # a comment keeps its line breaks only

    code = _C_TOKEN_RE.sub(strip, text)
    lines = [ln.rstrip() for ln in code.split("\n")]
    return _keep(re.split(r"\n{2,}", "\n".join(lines).strip("\n")), start)


# ---------------------------------------------------------------------- manual pages
#: font / emphasis macros whose arguments are text, joined with a space (man(7), mdoc(7))
_ROFF_JOINED = frozenset({"B", "I", "SM", "SB", "Nm", "Nd", "Xr", "Fl", "Ar", "Em", "Sy", "Li", "Pa", "Dq",
                          "Ql", "Cm", "Va", "Fn", "Fa", "Ft", "Dv", "Er", "Ev", "It", "Op"})
#: alternating-font macros: arguments concatenated without spaces (``.BR ls (1)`` -> ``ls(1)``)
_ROFF_ALTERNATING = frozenset({"BR", "IR", "RB", "BI", "IB", "RI"})
_ROFF_HEADINGS = frozenset({"SH", "SS", "Sh", "Ss"})
_ROFF_PARAGRAPH = frozenset({"PP", "P", "LP", "HP", "sp", "Pp", "TP", "IP", "TQ", "Sp"})
_ROFF_NOFILL = {"nf": False, "EX": False, "Bd": False, "Vb": False, "fi": True, "EE": True, "Ed": True, "Ve": True}
_ROFF_DEFINITIONS = frozenset({"de", "de1", "am", "am1", "ig"})  # skipped up to the ``..`` line
#: the special characters worth keeping (``\(xx``, ``\[xx]``); others are dropped
_ROFF_GLYPHS = {"em": "--", "en": "-", "hy": "-", "mi": "-", "bu": "*", "aq": "'", "dq": '"', "lq": '"',
                "rq": '"', "oq": "'", "cq": "'", "ga": "`", "ha": "^", "ti": "~", "rs": "\\", "sl": "/",
                "ba": "|", "or": "|", "pl": "+", "mu": "x", "co": "(C)", "rg": "(R)", "tm": "(TM)",
                "<=": "<=", ">=": ">=", "!=": "!=", "->": "->", "<-": "<-", "lB": "[", "rB": "]",
                "lC": "{", "rC": "}", "Fo": "<<", "Fc": ">>"}
#: the strings pod2man defines for quotes (``\*(L"``, ...); other strings are dropped
_ROFF_STRINGS = {'L"': '"', 'R"': '"', "C'": "'", "C`": "`", "Aq": "'", "C+": "C++"}
_ROFF_CHARS = {"e": "\\", "\\": "\\", "-": "-", "'": "'", "`": "`", " ": " ", "~": " ", "0": " ", ".": ".",
               "t": "\t"}
_ROFF_ESCAPE_RE = re.compile(r"""\\(?:
      \((?P<glyph>..) | \[(?P<named>[^\]]*)\]           # special characters
    | \*(?:\((?P<string>..)|\[[^\]]*\]|.)                # strings
    | [fFnkgmM](?:\(..|\[[^\]]*\]|.)                    # fonts, registers, colours
    | s[-+]?(?:\(\d\d|\[[^\]]*\]|\d)                    # type size
    | [hvwlLDoxbXZRNS]'[^']*'                           # motions, drawing, width, ...
    | (?P<char>.|$))""", re.X)


def _roff_inline(s: str) -> str:
    """Plain text of one roff line: escapes resolved, an inline ``\\"`` comment cut off."""
    out: list[str] = []
    pos = 0
    for m in _ROFF_ESCAPE_RE.finditer(s):
        out.append(s[pos:m.start()])
        pos = m.end()
        glyph = m.group("glyph") or m.group("named")
        if glyph is not None:
            out.append(_ROFF_GLYPHS.get(glyph, ""))
        elif m.group("string") is not None:
            out.append(_ROFF_STRINGS.get(m.group("string"), ""))
        elif m.group("char") == '"' or m.group("char") == "#":  # comment to the end of the line
            return "".join(out)
        elif m.group("char") is not None:
            out.append(_ROFF_CHARS.get(m.group("char"), ""))
    out.append(s[pos:])
    return "".join(out)


def _roff_args(s: str) -> list[str]:
    """Arguments of a request line: blank-separated, ``"..."`` quoted (``""`` is a quote)."""
    args, i, n = [], 0, len(s)
    while i < n:
        if s[i] in " \t":
            i += 1
            continue
        quoted = s[i] == '"'
        j = i + 1 if quoted else i
        buf = []
        while j < n:
            c = s[j]
            if c == "\\" and j + 1 < n:
                buf.append(s[j:j + 2])
                j += 2
                continue
            if quoted and c == '"':
                if s[j + 1:j + 2] == '"':
                    buf.append('"')
                    j += 2
                    continue
                j += 1
                break
            if not quoted and c in " \t":
                break
            buf.append(c)
            j += 1
        args.append(_roff_inline("".join(buf)))
        i = j
    return args


def _man(text: str, tree: ast.Module | None, budget: int, start: float) -> list[str]:
    paras: list[str] = []
    cur = ""
    fill, tag_next, skipping = True, False, False

    def flush() -> None:
        nonlocal cur
        if cur.strip():
            paras.append(cur.strip())
        cur = ""

    def add(t: str) -> None:
        nonlocal cur, tag_next
        if cur and not cur.endswith("\n"):
            cur += " " if fill else "\n"
        cur += t
        if tag_next:  # the tag line of .TP: on a line of its own
            cur += "\n"
            tag_next = False

    for line in text.split("\n"):
        if skipping:  # inside a macro definition / .ig block
            skipping = line.strip() != ".."
            continue
        if line.startswith((".\\\"", "'\\\"", ".\\#")):
            continue
        if not line.startswith((".", "'")):
            if line.strip():
                add(_roff_inline(line))
            elif fill:
                flush()
            continue
        name, _, rest = line[1:].strip().partition(" ")
        name = name.strip()
        if name in _ROFF_DEFINITIONS:
            skipping = True
        elif name in _ROFF_HEADINGS:
            flush()
            heading = " ".join(_roff_args(rest))
            cur = heading + "\n" if heading else ""
        elif name in _ROFF_PARAGRAPH:
            flush()
            tag_next = name in ("TP", "TQ")
            tag = _roff_args(rest)[0] if name == "IP" and rest.strip() else ""
            if tag:
                cur = tag + " "
        elif name in _ROFF_JOINED and rest.strip():
            add(" ".join(a for a in _roff_args(rest) if a not in _ROFF_JOINED))
        elif name in _ROFF_ALTERNATING and rest.strip():
            add("".join(_roff_args(rest)))
        elif name in _ROFF_NOFILL:
            fill = _ROFF_NOFILL[name]
        elif name == "br" and cur:
            cur += "\n"
    flush()
    return _keep(paras, start)


EXTRACTORS: dict[str, Callable[..., list[str]]] = {
    "docstrings": _docstrings,
    "comments": _comments,
    "code": _code,
    "c-comments": _c_comments,
    "c-code": _c_code,
    "man": _man,
}
#: the kinds that read the Python syntax tree (the others work on the text)
NEEDS_AST = frozenset({"docstrings", "code"})


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
            text, tree = self.cache.get(path, parse=self.kind in NEEDS_AST)
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
