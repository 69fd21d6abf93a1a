"""Practice notebooks run up to their first exercise and stop there with NotImplementedError.

(The solution notebooks are executed by nbval: pytest.ini collects solutions/ with --nbval-lax.)
"""
import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from conftest import ROOT, load_script

sync = load_script("tools/sync.py")

LESSONS = sync.lessons()


def first_exercise(lesson):
    solution, _, _ = sync.build(lesson)
    return next(c.metadata["exercise"] for c in solution.cells if c.metadata.get("exercise"))


@pytest.mark.parametrize("lesson", LESSONS, ids=[l.stem for l in LESSONS])
def test_practice_notebook_stops_at_first_exercise(lesson):
    number = first_exercise(lesson)
    path = ROOT / "labs" / f"{lesson.stem}.ipynb"
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    with pytest.raises(CellExecutionError) as err:
        client.execute()
    assert err.value.ename in ("NotImplementedError", "ExerciseNotDone"), err.value.ename
    assert f"Exercise {number}" in err.value.evalue

    code = [c for c in nb.cells if c.cell_type == "code"]
    failed = next(i for i, c in enumerate(code)
                  if any(o.output_type == "error" for o in c.outputs))
    placeholder = next(i for i, c in enumerate(code) if f'"Exercise {number}: ' in c.source)
    # Everything before the first exercise ran; the stop is the exercise or the check after it.
    assert all(c.execution_count for c in code[:failed])
    assert failed in (placeholder, placeholder + 1), (failed, placeholder)
