"""The import graph of direct_opt: no module imports itself back through others (function-level
imports and the subcommand modules cli loads by name included), and the core never imports the
torch-side packages."""

import ast
from pathlib import Path

import direct_opt
from direct_opt.cli import SUBCOMMANDS

ROOT = Path(direct_opt.__file__).parent
CORE = ("problem", "constraints", "stats", "rounding", "certificates", "linop", "reduction", "result",
        "registry", "defaults", "errors", "solvers", "oracle", "selectors")
TORCH_SIDE = ("direct_opt.distributed", "direct_opt.extract", "direct_opt.lm", "direct_opt.evaluate")


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Modules of direct_opt that ``name`` imports when imported or called (not under
    ``if TYPE_CHECKING:`` / ``if __name__ == "__main__":``)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for top in ast.walk(tree) if isinstance(top, ast.If)
            and any(w in ast.unparse(top.test) for w in ("TYPE_CHECKING", "__main__")) for n in ast.walk(top)}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    deps = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            base = ".".join((package[: len(package) - node.level + 1] if node.level else [])
                            + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        for t in targets:
            while t not in mods and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in mods and t != name:
                deps.add(t)
    return deps


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    graph["direct_opt.cli"] |= set(SUBCOMMANDS.values())  # importlib.import_module(module)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a path back to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = 2
        stack.pop()
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_no_module_imports_itself_back():
    graph = _graph()
    assert "direct_opt.cli_args" in graph["direct_opt.compare"]  # the analysis sees function-level imports
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_core_never_imports_the_torch_side():
    graph = _graph()
    core = [m for m in graph if "." in m and m.split(".")[1] in CORE and not m.endswith(".cli")]  # cli: applications
    bad = {m: sorted(d for d in graph[m] if d.startswith(TORCH_SIDE)) for m in core}
    assert not {m: d for m, d in bad.items() if d}


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
