"""The generator: labs/, solutions/ and lesson modules are exactly what `make sync` produces."""

import nbformat
import pytest

from conftest import ROOT, load_script

sync = load_script("tools/sync.py")


def test_generated_files_are_up_to_date():
    stale = [str(p.relative_to(ROOT)) for p, text in sync.outputs().items()
             if not p.is_file() or p.read_text() != text]
    assert not stale, f"run `make sync` and commit: out of date {stale}"


def test_generation_is_deterministic():
    assert sync.outputs() == sync.outputs()


def test_every_lesson_has_a_practice_and_a_solution_notebook():
    for lesson in sync.lessons():
        assert (ROOT / "labs" / f"{lesson.stem}.ipynb").is_file()
        assert (ROOT / "solutions" / f"{lesson.stem}.ipynb").is_file()


@pytest.mark.parametrize("folder", ["labs", "solutions"])
def test_notebooks_have_no_outputs_or_markers(folder):
    for path in (ROOT / folder).glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path
                assert sync.BEGIN not in cell.source and sync.END not in cell.source, path


def test_practice_notebooks_hide_every_solution():
    for lesson in sync.lessons():
        solution, practice, _ = sync.build(lesson)
        exercises = [c for c in solution.cells if c.metadata.get("exercise")]
        placeholders = [c for c in practice.cells
                        if c.cell_type == "code"
                        and "raise NotImplementedError(\"Exercise" in c.source]
        assert len(placeholders) == len(exercises) > 0, lesson.name
        for sol, lab in zip(exercises, placeholders):
            number = sol.metadata["exercise"]
            assert f'NotImplementedError("Exercise {number}: ' in lab.source
            assert lab.source != sol.source


SOURCE = '''def f(x):
    y = 1
    ### BEGIN SOLUTION
    return x + y
    ### END SOLUTION'''


def test_placeholder_keeps_indentation_and_names_exercise():
    out = sync.with_placeholders(SOURCE, "2.3", "add y", "test")
    assert out.splitlines()[-1] == '    raise NotImplementedError("Exercise 2.3: add y")'
    assert "return x + y" not in out
    assert "return x + y" in sync.without_markers(SOURCE)


@pytest.mark.parametrize("bad, message", [
    (SOURCE.replace("    ### END SOLUTION", ""), "has no"),
    (SOURCE.replace("    ### BEGIN SOLUTION\n", ""), "without"),
])
def test_unbalanced_markers_are_reported(bad, message):
    with pytest.raises(sync.SyncError, match=message):
        sync.with_placeholders(bad, "1.1", "hint", "lesson cell 3")


def _lesson(tmp_path, options):
    book = tmp_path / "book"
    book.mkdir()
    (book / "09_demo.md").write_text(
        "---\njupytext:\n  text_representation:\n    format_name: myst\nkernelspec:\n"
        "  name: python3\n  display_name: Python 3\n---\n\n# Demo\n\n"
        "```{code-cell} ipython3\n" + options + "\n" + SOURCE + "\n```\n")
    return book / "09_demo.md"


def test_solution_cell_without_metadata_is_refused(tmp_path):
    with pytest.raises(sync.SyncError, match=r"needs metadata \['exercise', 'hint'\]"):
        sync.build(_lesson(tmp_path, ":tags: [hide-input]"))


def test_solution_cell_must_be_collapsed_in_the_book(tmp_path):
    with pytest.raises(sync.SyncError, match="hide-input"):
        sync.build(_lesson(tmp_path, ':exercise: "9.1"\n:hint: add'))


def test_saved_cells_become_a_module(tmp_path):
    lesson = _lesson(tmp_path, ':tags: [hide-input]\n:exercise: "9.1"\n:hint: add')
    text = lesson.read_text().replace("def f(x):", "#@save\ndef f(x):")
    lesson.write_text(text)
    _, _, module = sync.build(lesson)
    namespace = {}
    exec(module, namespace)
    assert namespace["f"](2) == 3


def test_saved_module_hoists_imports_and_refers_to_its_section(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    cell = "```{code-cell} ipython3\n#@save\n%s\n```\n"
    (book / "09_demo.md").write_text(
        "---\njupytext:\n  text_representation:\n    format_name: myst\nkernelspec:\n"
        "  name: python3\n  display_name: Python 3\n---\n\n# Demo\n\n## The first part\n\n"
        + cell % "import math\n\n\ndef f(x):\n    return math.sqrt(x)"
        + "\n## The second part\n\nText.\n\n"
        + cell % "import json\nimport math\n\n# why g\ndef g(x):\n    return json.dumps(f(x))")
    _, _, module = sync.build(book / "09_demo.md")
    lines = module.splitlines()
    assert lines[4:6] == ["import json", "import math"]  # hoisted, once each, in ruff's order
    assert module.count("import math") == 1
    assert lines[lines.index("def f(x):") - 1] == '# Defined in book/09_demo.md, "The first part"'
    assert lines[lines.index("def g(x):") - 2:lines.index("def g(x):")] == [
        '# Defined in book/09_demo.md, "The second part"', "# why g"]
    namespace = {}
    exec(module, namespace)
    assert namespace["g"](4.0) == "2.0"
