"""lstmbook.checks' framework: what the student's code raises inside a check comes back as the
course's message (exercise, error, the student's own line, a hint chosen by the error), and
notebooks show that message alone, without the checker's frames."""
import linecache
import re

import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient

from lstmbook import checks
from lstmbook.checks import intro as check_intro

FAKE_CELL = "/tmp/ipykernel_4242/1234567.py"  # the file name ipykernel gives a notebook cell


def student(source: str, name: str = "answer"):
    """Define ``name`` from ``source`` as a notebook cell would: a file outside lstmbook whose
    lines linecache knows (IPython registers each cell's source there)."""
    linecache.cache[FAKE_CELL] = (len(source), None, source.splitlines(True), FAKE_CELL)
    namespace = {"np": np, "torch": torch}
    exec(compile(source, FAKE_CELL, "exec"), namespace)
    return namespace[name]


def line_of(source: str, text: str) -> int:
    return next(i for i, line in enumerate(source.splitlines(), 1) if text in line)


# Each: the body of answer(ids, V) (the line that raises comes last), the error, the hint's words.
CASES = {
    "numpy matmul": ("return np.ones((V, 3)) @ np.ones((V, 3))",
                     r"ValueError: matmul", r"matrix product.*W\.T"),
    "numpy dot": ("return np.dot(np.ones((V, 3)), np.ones((V, 3)))",
                  r"ValueError: shapes \(4,3\) and \(4,3\) not aligned", "matrix product"),
    "torch matmul": ("return torch.ones(V, 3) @ torch.ones(V, 3)",
                     r"RuntimeError: mat1 and mat2 shapes cannot be multiplied",
                     r"matrix product.*W\.t\(\)"),
    "chunk without dim": ("i, f, g, o = torch.ones(3, 4 * V).chunk(4)",
                          r"ValueError: not enough values to unpack \(expected 4, got 3\)",
                          r"chunk\(4\).*dim=1"),
    "too many to unpack": ("H, C = (1, 2, 3)",
                           r"ValueError: too many values to unpack", "number of pieces"),
    "numpy broadcast": ("return np.ones((V, 3)) + np.ones(V)",
                        "ValueError: operands could not be broadcast", "broadcast"),
    "torch broadcast": ("return torch.ones(V, 3) * torch.ones(V)",
                        r"RuntimeError: The size of tensor a \(3\) must match", "broadcast"),
    "index": ("return np.zeros(V)[ids[0] + V]",
              "IndexError: index 4 is out of bounds", r"index is past the end.*range\(T\)"),
    "forgot to return": ("def counts(ids):\n        np.bincount(ids, minlength=V)\n"
                         "    return counts(ids) + 1",
                         r"TypeError: unsupported operand type\(s\) for \+: 'NoneType'",
                         "without `return"),
    "None has no attribute": ("p = None\n    return p.shape",
                              "AttributeError: 'NoneType' object has no attribute",
                              "without `return"),
    "cell not run": ("return np.log(smoothed_counts(ids, V))",
                     "NameError: name 'smoothed_counts' is not defined",
                     r"`smoothed_counts` is not defined in this kernel.*Run the cells above"),
    "leaf parameter": ("w = torch.zeros(V, requires_grad=True)\n    w[0] = 1.0",
                       "RuntimeError: a view of a leaf Variable", "torch.no_grad()"),
    "generic": ("return {}['counts']", "KeyError: 'counts'", "print the shapes and types"),
}


@pytest.mark.parametrize("body, error, hint", CASES.values(), ids=CASES.keys())
def test_student_errors_come_back_with_exercise_line_and_hint(body, error, hint):
    source = f"def answer(ids, V):\n    {body}\n"
    answer = student(source)
    with pytest.raises(checks.ExerciseError) as caught:
        check_intro.unigram_log_probs(answer)
    err = caught.value
    message = str(err)
    assert isinstance(err, checks.ExerciseFailed)
    assert message.startswith("Exercise 0.1 (a unigram model): your code raised "), message
    assert re.search(error, message), message
    last = source.splitlines()[-1].strip()
    where = f'"{FAKE_CELL}", line {line_of(source, last)}, in '
    assert where in message and f"`{last}`" in message, message
    assert re.search(rf"Hint: .*{hint}", message), message
    assert err.__cause__ is err.error and re.search(error.split(": ")[0],
                                                    type(err.__cause__).__name__)
    # The notebook's view: the message, the student's line with its source, the hint; no frames.
    lines = err._render_traceback_()
    assert lines[0].startswith("ExerciseError: Exercise 0.1 (a unigram model): your code raised")
    assert lines[1] == f"  File {where}answer"
    assert lines[2] == f"    {last}" and lines[3].startswith("Hint: ")
    assert not any("Traceback" in line or "checks/__init__.py" in line for line in lines)


def test_the_innermost_line_of_the_students_code_is_named():
    source = ("def gates(Z):\n    return Z.chunk(4)\n\n"
              "def answer(ids, V):\n    i, f, g, o = gates(torch.ones(3, 4 * V))\n    return i\n")
    with pytest.raises(checks.ExerciseError) as caught:
        check_intro.unigram_log_probs(student(source))
    # The unpack fails in answer (line 5): gates returned fine, so answer's line is the culprit.
    assert caught.value.where == f'"{FAKE_CELL}", line 5, in answer'
    source = ("def helper(x):\n    return x @ np.eye(2)\n\n"
              "def answer(ids, V):\n    return helper(ids)\n")
    with pytest.raises(checks.ExerciseError) as caught:
        check_intro.unigram_log_probs(student(source))
    assert caught.value.where == f'"{FAKE_CELL}", line 2, in helper'
    assert caught.value.line == "return x @ np.eye(2)"


def test_an_exercise_can_add_its_shapes_to_shape_hints():
    @checks.exercise("9.1", "a toy", shapes="W is (hidden, input)")
    def toy(answer):
        answer(np.ones((2, 3)), np.ones((4, 3)))

    with pytest.raises(checks.ExerciseError, match=r"matrix product.* In this exercise: W is"):
        toy(student("def answer(X, W):\n    return X @ W\n"))
    with pytest.raises(checks.ExerciseError) as caught:
        toy(student("def answer(X, W):\n    return X @ Wt\n"))
    assert "In this exercise" not in str(caught.value)


def test_an_error_outside_the_students_code_says_so():
    # The answer returns strings: the check's own conversion fails, no line of the student's.
    with pytest.raises(checks.ExerciseError) as caught:
        check_intro.unigram_log_probs(student("def answer(ids, V):\n    return list('abcd')\n"))
    err = caught.value
    assert str(err).startswith("Exercise 0.1 (a unigram model): checking what your code returned "
                               "raised ValueError: could not convert string to float")
    assert err.where == "" and " at " not in str(err).split(". Hint:")[0]
    assert isinstance(err.__cause__, ValueError)


def test_placeholders_and_wrong_answers_keep_their_messages():
    with pytest.raises(checks.ExerciseNotDone) as caught:
        check_intro.unigram_log_probs(student(
            "def answer(ids, V):\n    raise NotImplementedError('Exercise 0.1')\n"))
    assert caught.value._render_traceback_() == [f"ExerciseNotDone: {caught.value}"]
    with pytest.raises(checks.ExerciseFailed) as caught:
        check_intro.unigram_log_probs(lambda ids, V: np.log(np.full(V, 1.0 / V)))
    assert type(caught.value) is checks.ExerciseFailed
    message, hint = str(caught.value).split(" Hint: ")
    assert caught.value._render_traceback_() == [f"ExerciseFailed: {message}", f"Hint: {hint}"]
    assert message.startswith("Exercise 0.1 (a unigram model): log p")


def test_full_traceback_outside_ipython_still_gives_the_message(monkeypatch):
    monkeypatch.setattr(checks, "FULL_TRACEBACK", True)
    err = checks.ExerciseFailed("Exercise 9.9 (x): wrong")
    assert err._render_traceback_() == ["ExerciseFailed: Exercise 9.9 (x): wrong"]


NOTEBOOK = [
    "import numpy as np\nfrom lstmbook.checks import intro as check",
    "def uniform(ids, V):\n    return np.log(np.full(V, 1.0 / V))",
    "check.unigram_log_probs(uniform)",
    "def product(ids, V):\n    counts = np.bincount(ids, minlength=V)\n"
    "    return counts @ np.ones((2, 2))",
    "check.unigram_log_probs(product)",
    "import lstmbook.checks\nlstmbook.checks.FULL_TRACEBACK = True\n"
    "check.unigram_log_probs(product)",
]


def test_a_notebook_shows_the_course_message_without_the_checkers_frames(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in NOTEBOOK])
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [next((o for o in cell.outputs if o.output_type == "error"), None)
              for cell in nb.cells]
    assert [e is not None for e in errors] == [False, False, True, False, True, True]

    wrong = errors[2]
    assert wrong.ename == "ExerciseFailed"
    shown = "\n".join(wrong.traceback)
    assert shown.startswith("ExerciseFailed: Exercise 0.1 (a unigram model): log p")
    assert "\nHint: add 1 to every count" in shown
    assert "checks/__init__.py" not in shown and "Traceback" not in shown

    raised = errors[4]
    assert raised.ename == "ExerciseError"
    shown = "\n".join(raised.traceback)
    assert shown.startswith("ExerciseError: Exercise 0.1 (a unigram model): your code raised "
                            "ValueError: matmul")
    # The cell is named as IPython names it, with the student's line.
    assert re.search(r"\n  Cell In\[4\], line 3, in product\n"
                     r"    return counts @ np.ones\(\(2, 2\)\)\n"
                     r"Hint: the two sides of a matrix product", shown), shown
    assert "checks/__init__.py" not in shown and "intro.py" not in shown

    full = "\n".join(errors[5].traceback)  # on request, IPython's full chained traceback
    assert "checks/__init__.py" in full and "ValueError" in full and "product" in full


def test_a_lessons_own_wrapper_keeps_its_hint_and_gets_the_line():
    @checks.exercise("9.2", "a toy with its own hint")
    def toy(answer):
        try:
            answer(np.ones((2, 3)))
        except ValueError as err:
            raise checks.student_error(err, "the matmul backward", "transpose W") from err

    with pytest.raises(checks.ExerciseError) as caught:
        toy(student("def answer(X):\n    return X @ X\n"))
    err = caught.value
    assert str(err).startswith("Exercise 9.2 (a toy with its own hint): the matmul backward "
                               "raised ValueError: matmul")
    assert err.where == f'"{FAKE_CELL}", line 2, in answer' and err.line == "return X @ X"
    assert err.hint == "transpose W" and isinstance(err.__cause__, ValueError)
