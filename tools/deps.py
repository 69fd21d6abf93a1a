"""What imports what: the lstmbook modules a source file uses, directly and through each other.

Two users: tests/test_layout.py (imports must run downward) and tools/book_cache.py (a change
to one module re-executes only the pages that use it). Every import counts, the ones inside
functions too. Static analysis, so nothing is imported or run.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lstmbook"


def module_name(path: Path, root: Path = ROOT) -> str:
    """lstmbook/lessons/numpy_lstm.py -> lstmbook.lessons.numpy_lstm (a package: its name)."""
    parts = Path(path).relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str, root: Path = ROOT) -> Path | None:
    """The file of a module or package, or None when ``name`` is not one (an attribute)."""
    path = root.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def parse(source: str) -> ast.Module:
    """Parse Python, or a notebook cell with IPython lines (%magic, !shell) left out."""
    try:
        return ast.parse(source)
    except SyntaxError:
        kept = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        return ast.parse("\n".join(kept))


def imported(module: str, source: str, is_package: bool = False, root: Path = ROOT,
             roots: tuple = ("lstmbook",)) -> list[str]:
    """The modules under ``roots`` that ``source`` (the text of ``module``) imports, anywhere.

    ``from lstmbook import x`` counts as lstmbook.x when x is a module, else as lstmbook."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([base] if base else []))
            found += [f"{base}.{alias.name}" if module_path(f"{base}.{alias.name}", root)
                      else base for alias in node.names]
    return [name for name in found if name.split(".")[0] in roots]


def package_sources(root: Path = ROOT) -> dict[str, tuple[str, bool]]:
    """{module: (source, is_package)} for every module of lstmbook."""
    return {module_name(path, root): (path.read_text(), path.name == "__init__.py")
            for path in sorted((root / "lstmbook").rglob("*.py"))}


def closure(names, sources: dict[str, tuple[str, bool]], root: Path = ROOT) -> set[str]:
    """The modules ``names`` need, themselves included: what they import, what that imports,
    and the packages above each (importing lstmbook.checks.x runs lstmbook/checks/__init__.py
    and lstmbook/__init__.py first)."""
    needed, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in needed or name not in sources:
            continue
        needed.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += imported(name, *sources[name], root=root)
    return needed
