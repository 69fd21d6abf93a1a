"""The house rules of lstmbook: imports run upward only, generated code lives in lessons/, and
nothing in the package imports the tools (tools/) or the lab (lab/).

Every import counts, the ones inside functions too: a lazy import that runs back up the layers
is still a circle waiting to happen.
"""
import ast
import subprocess
import sys

import pytest

from conftest import ROOT

PACKAGE = ROOT / "lstmbook"

# The layers, bottom up: a module may import modules of a lower layer only. Within lessons/ and
# checks/ modules may also use each other (a later lesson builds on an earlier one; every check
# uses the framework in checks/__init__.py). "lstmbook" is the package's __init__.
LAYERS = [
    {"lstmbook.runtime"},
    {"lstmbook", "lstmbook.data", "lstmbook.plots"},
    {"lstmbook.lm", "lstmbook.training"},
    {"lstmbook.lessons"},
    {"lstmbook.compare", "lstmbook.best_model"},
    {"lstmbook.checks"},
    {"lstmbook.bench", "lstmbook.sample"},
]
OUTSIDE = ("tools", "lab", "sync", "hub_admin", "collect")  # never imported by the package


def layer(module: str) -> int:
    for rank, names in enumerate(LAYERS):
        if module in names or any(module.startswith(name + ".") for name in names - {"lstmbook"}):
            return rank
    raise KeyError(f"{module} is in no layer of tests/test_layout.py: place it in one")


def module_name(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(module: str, source: str, is_package: bool) -> list[str]:
    """The lstmbook modules (and outside tools) that ``source`` imports, anywhere in the file.
    ``from lstmbook import x`` counts as lstmbook.x when x is a module, else as lstmbook."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            found += [f"{base}.{alias.name}" if is_module(f"{base}.{alias.name}") else base
                      for alias in node.names]
    return [name for name in found
            if name.split(".")[0] == "lstmbook" or name.split(".")[0] in OUTSIDE]


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(modules: dict[str, tuple[str, bool]]) -> list[str]:
    """Every import against the rules, for {module: (source, is_package)}."""
    wrong = []
    for module, (source, is_package) in modules.items():
        for target in imported(module, source, is_package):
            if target.split(".")[0] in OUTSIDE:
                wrong.append(f"{module} imports {target}: tools and the lab stay outside")
                continue
            siblings = any(all(m.startswith(f"lstmbook.{sub}") for m in (module, target))
                           for sub in ("lessons", "checks"))
            if target != module and layer(target) >= layer(module) and not siblings:
                wrong.append(f"{module} (layer {layer(module)}) imports {target} "
                             f"(layer {layer(target)}): imports must run downward")
    return wrong


def package_modules() -> dict[str, tuple[str, bool]]:
    return {module_name(path): (path.read_text(), path.name == "__init__.py")
            for path in sorted(PACKAGE.rglob("*.py"))}


def test_the_package_imports_only_downward():
    assert violations(package_modules()) == []


def test_every_module_has_a_layer():
    for module in package_modules():
        layer(module)


@pytest.mark.parametrize("module, source, message", [
    ("lstmbook.lessons.numpy_lstm", "from lstmbook import bench", "imports must run downward"),
    ("lstmbook.compare", "def f():\n    from . import bench", "imports must run downward"),
    ("lstmbook.training", "from .lessons import pytorch_lstm", "imports must run downward"),
    ("lstmbook.data", "import tools.sync", "stay outside"),
    ("lstmbook.best_model", "from .compare import CONTENDERS", "imports must run downward"),
])
def test_a_wrong_import_is_caught(module, source, message):
    modules = dict(package_modules())
    modules[module] = (source, False)
    found = violations(modules)
    assert found and message in found[0], found


def test_generated_modules_live_in_lessons():
    """Every module in lstmbook/lessons/ comes from a lesson, and none sits outside it."""
    generated = {p.stem for p in (PACKAGE / "lessons").glob("*.py")} - {"__init__"}
    lessons = {p.stem.split("_", 1)[1] for p in (ROOT / "book").glob("[0-9][0-9]_*.md")}
    assert generated <= lessons
    assert not generated & {p.stem for p in PACKAGE.glob("*.py")}
    for name in generated:
        assert "Generated by `make sync`" in (PACKAGE / "lessons" / f"{name}.py").read_text()


def test_generated_modules_hoist_imports_and_name_their_section():
    for path in (PACKAGE / "lessons").glob("[a-z]*.py"):
        tree = ast.parse(path.read_text())
        body = tree.body[1:]  # after the docstring
        first_other = next(i for i, node in enumerate(body)
                           if not isinstance(node, (ast.Import, ast.ImportFrom)))
        late = [n.lineno for n in body[first_other:]
                if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert not late, f"{path.name}: imports after the first definition, at lines {late}"
        lines = path.read_text().splitlines()
        for node in body[first_other:]:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
                above = [line for line in lines[:start] if line.startswith("# Defined in book/")]
                assert above, f"{path.name}: {node.name} has no back-reference"


def test_the_package_does_not_import_the_lab_or_tools_at_run_time():
    """Importing what the lessons use starts no server and loads no authoring tool."""
    code = ("import sys, lstmbook.bench, lstmbook.checks.comparison, lstmbook.sample; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{OUTSIDE!r} or m.startswith('jupyterhub')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
