"""``make sync``: generate everything that derives from a lesson's single source in book/.

book/NN_name.md (MyST notebook) ->
  solutions/NN_name.ipynb     the whole lesson, solution markers removed;
  labs/NN_name.ipynb          each solution region replaced by ``raise NotImplementedError(
                              "Exercise N.M: hint")``, cells tagged ``solution-only`` dropped;
  lstmbook/lessons/name.py    the cells marked ``#@save`` (code later lessons and the bench
                              reuse): imports hoisted to the top, each definition preceded by a
                              comment naming the lesson section that explains it.

A solution cell carries its exercise number and a one-line hint in its metadata
(``:exercise: "1.2"`` and ``:hint: ...`` in MyST) and the ``hide-input`` tag, so the book shows
it collapsed. Output has no execution results and the same bytes on every run.
``python tools/sync.py --check`` writes nothing and exits 1 when a file is out of date.
This is an authoring tool: nothing in ``lstmbook`` imports it.
"""
import argparse
import ast
import copy
import json
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
LESSONS_PACKAGE = Path("lstmbook") / "lessons"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SAVE = "#@save"
SOLUTION_ONLY = "solution-only"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


class SyncError(ValueError):
    pass


def lessons(root: Path = ROOT) -> list[Path]:
    return sorted((root / "book").glob("[0-9][0-9]_*.md"))


def module_name(lesson: Path) -> str:
    """book/01_rnn_theory.md -> rnn_theory"""
    return lesson.stem.split("_", 1)[1]


def _regions(lines: list[str], where: str):
    """Yield (begin, end) line indices of each solution region; complain about unbalanced ones."""
    begin = None
    for i, line in enumerate(lines):
        if line.strip() == BEGIN:
            if begin is not None:
                raise SyncError(f"{where}: nested '{BEGIN}' at line {i + 1}")
            begin = i
        elif line.strip() == END:
            if begin is None:
                raise SyncError(f"{where}: '{END}' without '{BEGIN}' at line {i + 1}")
            yield begin, i
            begin = None
    if begin is not None:
        raise SyncError(f"{where}: '{BEGIN}' at line {begin + 1} has no '{END}'")


def without_markers(source: str) -> str:
    return "\n".join(l for l in source.split("\n") if l.strip() not in (BEGIN, END))


def with_placeholders(source: str, number: str, hint: str, where: str) -> str:
    lines = source.split("\n")
    out, pos = [], 0
    for begin, end in list(_regions(lines, where)):
        indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
        out += lines[pos:begin]
        message = json.dumps(f"Exercise {number}: {hint}")
        out.append(f"{indent}raise NotImplementedError({message})")
        pos = end + 1
    return "\n".join(out + lines[pos:])


def _check_solution_cell(cell, where: str) -> None:
    list(_regions(cell.source.split("\n"), where))
    missing = [k for k in ("exercise", "hint") if not cell.metadata.get(k)]
    if missing:
        raise SyncError(f"{where}: a cell with a solution region needs metadata {missing} "
                        "(in MyST: ':exercise: \"1.2\"' and ':hint: one line')")
    if "hide-input" not in cell.metadata.get("tags", []):
        raise SyncError(f"{where}: a solution cell needs the 'hide-input' tag so the book shows "
                        "it collapsed")


def _clean(nb, cells):
    nb = copy.deepcopy(nb)
    nb.cells = cells
    nb.metadata = nbformat.from_dict({"kernelspec": KERNELSPEC,
                                      "language_info": {"name": "python"}})
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:03d}"  # stable ids: same bytes on every run
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nb


def heading(cell) -> str | None:
    """The last Markdown heading of a cell, without its #s: the section a saved cell sits in."""
    titles, fenced = [], False
    for line in cell.source.split("\n"):
        fenced ^= line.lstrip().startswith(("```", "~~~"))
        if not fenced and line.startswith("#") and line.lstrip("#").startswith(" "):
            titles.append(line.lstrip("#").strip())
    return titles[-1] if titles else None


def hoist(code: str, where: str) -> tuple[list[str], str]:
    """Split a saved cell into its top-level import statements and the rest of its code."""
    lines = code.split("\n")
    try:
        tree = ast.parse(code)
    except SyntaxError as err:
        raise SyncError(f"{where}: a #@save cell must be valid Python: {err}") from None
    imports, drop = [], set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append("\n".join(lines[node.lineno - 1:node.end_lineno]))
            drop.update(range(node.lineno - 1, node.end_lineno))
    rest = "\n".join(line for i, line in enumerate(lines) if i not in drop)
    return imports, rest.strip("\n")


def with_back_references(code: str, reference: str) -> str:
    """Put ``reference`` above every top-level definition (above its decorators and the comment
    lines right before it)."""
    lines = code.split("\n")
    starts = []
    for node in ast.parse(code).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef, ast.Assign,
                             ast.AnnAssign)):
            decorators = getattr(node, "decorator_list", [])
            first = min([node.lineno] + [d.lineno for d in decorators]) - 1
            while first > 0 and lines[first - 1].lstrip().startswith("#"):
                first -= 1
            starts.append(first)
    for first in sorted(set(starts), reverse=True):
        lines.insert(first, reference)
    return "\n".join(lines)


def sort_imports(source: str, path: Path) -> str:
    """Order the hoisted imports as the project's ruff settings (pyproject.toml) want them."""
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--fix-only", "--quiet",
                           "--select", "I", "--stdin-filename", str(path), "-"],
                          input=source, capture_output=True, text=True, cwd=ROOT)
    if done.returncode not in (0, 1):
        raise SyncError(f"ruff could not sort the imports of {path}: {done.stderr.strip()}")
    return done.stdout


def saved_module(lesson: Path, saved: list[tuple[str, str]]) -> str:
    """The module of a lesson's #@save cells: (section, code) pairs in lesson order."""
    imports, bodies = [], []
    for section, code in saved:
        where = f"book/{lesson.name}, {section!r}"
        cell_imports, rest = hoist(code, where)
        imports += [i for i in cell_imports if i not in imports]
        if rest:
            bodies.append(with_back_references(rest, f"# Defined in book/{lesson.name}, "
                                                     f'"{section}"'))
    header = (f'"""Code saved from book/{lesson.name} (cells marked {SAVE}).\n\n'
              f'Generated by `make sync`: edit the lesson, not this file.\n"""\n')
    source = header + "\n".join(imports) + "\n\n\n" + "\n\n\n".join(bodies) + "\n"
    return sort_imports(source, LESSONS_PACKAGE / f"{module_name(lesson)}.py")


def build(lesson: Path):
    """Return (solution notebook, practice notebook, saved-module source) for one lesson."""
    nb = jupytext.read(lesson, fmt="md:myst")
    solution, practice, saved = [], [], []
    section = lesson.stem
    for i, cell in enumerate(nb.cells):
        where = f"{lesson.relative_to(lesson.parent.parent)} cell {i}"
        if cell.cell_type == "markdown":
            section = heading(cell) or section
        has_solution = cell.cell_type == "code" and BEGIN in cell.source
        if has_solution:
            _check_solution_cell(cell, where)
        sol = copy.deepcopy(cell)
        sol.source = without_markers(cell.source)
        solution.append(sol)
        if SOLUTION_ONLY not in cell.metadata.get("tags", []):
            lab = copy.deepcopy(cell)
            if has_solution:
                lab.source = with_placeholders(cell.source, cell.metadata["exercise"],
                                               cell.metadata["hint"], where)
            practice.append(lab)
        if cell.cell_type == "code" and cell.source.startswith(SAVE):
            saved.append((section, sol.source[len(SAVE):].strip("\n")))
    module = saved_module(lesson, saved) if saved else None
    return _clean(nb, solution), _clean(nb, practice), module


def outputs(root: Path = ROOT) -> dict[Path, str]:
    """Every generated file and its text."""
    files = {}
    for lesson in lessons(root):
        solution, practice, module = build(lesson)
        files[root / "solutions" / f"{lesson.stem}.ipynb"] = nbformat.writes(solution) + "\n"
        files[root / "labs" / f"{lesson.stem}.ipynb"] = nbformat.writes(practice) + "\n"
        if module:
            files[root / LESSONS_PACKAGE / f"{module_name(lesson)}.py"] = module
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    try:
        files = outputs()
    except SyncError as err:
        print(f"make sync: {err}", file=sys.stderr)
        return 2
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
    orphans = [p for p in sorted((ROOT / LESSONS_PACKAGE).glob("*.py"))
               if p.name != "__init__.py" and p not in files]
    for path in orphans:  # a lesson renamed or without #@save cells any more
        print(f"{'no lesson saves' if args.check else 'removed'} {path.relative_to(ROOT)}")
        if not args.check:
            path.unlink()
    for path in stale:
        rel = path.relative_to(ROOT)
        if args.check:
            print(f"out of date: {rel} (run `make sync`)")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[path])
            print(f"wrote {rel}")
    if not stale and not orphans:
        print(f"{len(files)} generated files up to date")
    return 1 if (args.check and (stale or orphans)) else 0


if __name__ == "__main__":
    sys.exit(main())
