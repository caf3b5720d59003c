"""Collect and run the ```python blocks of the documentation (README.md and docs/**/*.md).

Convention: a block that cannot run in CI (needs a GPU, the network, or a long run) is
preceded by an HTML comment on the line right before it::

    <!-- no-test: needs a CUDA GPU -->

Blocks of one file run in order in one shared namespace (like a reader following the
page), each file in a fresh namespace.  ``python tests/docs/snippets.py [FILES]`` runs
them and prints one JSON line per block.
"""

from __future__ import annotations

import json
import re
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NO_TEST = re.compile(r"^<!--\s*no-test:\s*(.*?)\s*-->$")
FENCE = re.compile(r"^(\s*)```+\s*([\w+-]*)")


@dataclass
class Snippet:
    path: str      # relative to the repository root
    line: int      # 1-based line of the opening fence
    code: str
    skip: str | None = None  # the no-test reason, None when the block runs


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown page under docs/."""
    files = [root / "README.md"] if (root / "README.md").exists() else []
    return files + sorted((root / "docs").rglob("*.md"))


def collect(path: Path, root: Path = ROOT) -> list[Snippet]:
    """The fenced python blocks of one Markdown file; raises ValueError on a dangling marker."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = str(path.relative_to(root))
    out: list[Snippet] = []
    i, pending = 0, None
    while i < len(lines):
        text = lines[i].strip()
        m = NO_TEST.match(text)
        if m:
            if not m.group(1):
                raise ValueError(f"{rel}:{i + 1}: no-test marker without a reason; write <!-- no-test: why -->.")
            pending = (i + 1, m.group(1))
            i += 1
            continue
        f = FENCE.match(lines[i])
        if f:
            lang, start = f.group(2).lower(), i
            i += 1
            body = []
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            i += 1  # closing fence
            if pending is not None and pending[0] != start:
                raise ValueError(f"{rel}:{pending[0]}: no-test marker must sit on the line right before a block.")
            if lang in ("python", "py"):
                indent = len(f.group(1))
                code = "\n".join(b[indent:] if b[:indent].isspace() else b for b in body)
                out.append(Snippet(rel, start + 1, code, pending[1] if pending else None))
            elif pending is not None:
                raise ValueError(f"{rel}:{pending[0]}: no-test marker before a non-python block.")
            pending = None
            continue
        if text and pending is not None:
            raise ValueError(f"{rel}:{pending[0]}: no-test marker must sit on the line right before a block.")
        i += 1
    if pending is not None:
        raise ValueError(f"{rel}:{pending[0]}: no-test marker at the end of the file.")
    return out


def cli_commands(path: Path, root: Path = ROOT) -> list[tuple[str, int, list[str]]]:
    """``direct-opt ...`` invocations in the ```bash / ```sh blocks of a file (also after a
    launcher such as ``torchrun ... direct-opt``): [(path, line, argv after "direct-opt")].
    Backslash continuations are joined; commands are split on ``&&``, ``||``, ``;`` and ``|``;
    comments are dropped. A line the shell could not parse raises ValueError naming it."""
    import shlex

    rel = str(path.relative_to(root))
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        f = FENCE.match(lines[i])
        if not f:
            i += 1
            continue
        lang = f.group(2).lower()
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            start, text = i + 1, lines[i].strip()
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1] + " " + lines[i].strip()
            i += 1
            if lang not in ("bash", "sh", "shell", "console"):
                continue
            try:
                words = shlex.split(text.lstrip("$ "), comments=True)
            except ValueError as exc:
                raise ValueError(f"{rel}:{start}: cannot parse shell line {text!r}: {exc}") from None
            cmd: list[str] = []
            for w in words + ["&&"]:
                if w in ("&&", ";", "|", "||"):
                    if "direct-opt" in cmd:
                        out.append((rel, start, cmd[cmd.index("direct-opt") + 1:]))
                    cmd = []
                else:
                    cmd.append(w)
        i += 1
    return out


def run_file(snippets: list[Snippet]) -> list[dict]:
    """Run one file's blocks in order in one namespace; one result dict per block."""
    ns: dict = {"__name__": "__docs__"}
    results = []
    for s in snippets:
        rec = {"path": s.path, "line": s.line, "skip": s.skip, "ok": None, "error": None, "time_s": 0.0}
        if s.skip is None:
            t = time.perf_counter()
            try:
                exec(compile(s.code, f"{s.path}:{s.line}", "exec"), ns)
                rec["ok"] = True
            except BaseException:  # noqa: BLE001 - report everything, including SystemExit
                rec["ok"] = False
                rec["error"] = traceback.format_exc(limit=-3)
            rec["time_s"] = time.perf_counter() - t
        results.append(rec)
    return results


def main(argv: list[str]) -> int:
    import matplotlib

    matplotlib.use("Agg")
    files = [Path(a).resolve() for a in argv] or doc_files()
    for f in files:
        for rec in run_file(collect(f)):
            print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
