"""lab/grade.py: grading by re-running the students' notebooks with the course's own checks.

Fake student folders made from lesson 0 (a few seconds in quick mode) are graded in one run: a
solved exercise scores; the placeholder, a wrong answer and a forged "Exercise 0.1 passed" do
not; a notebook that hangs is stopped at its time limit and one whose kernel dies is reported,
while the others are graded; symbolic links and FIFOs are neither followed nor copied.

As root, that run switches to `nobody` as the grader does. Where nobody cannot run this
environment's Python (a Python installed under /root, mode 700), its kernels run as the test's
own user instead, and the switch is tested in parts: the launcher as nobody, the connection file's
owner, the refusals.
"""
import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, load_script

grade = load_script("lab/grade.py")

LESSON = "00_intro.ipynb"
TIME_LIMIT = 20          # seconds per notebook: lesson 0 takes about 2 in quick mode
MEMORY = 2 * 2**30       # the kernels' address space
AS_ROOT = os.geteuid() == 0
SYSTEM_PYTHON = "/usr/bin/python3"   # outside any private home, so nobody can run it


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def exercise_index(nb) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("exercise") == "0.1")


def solution_source() -> str:
    sol = nbformat.read(ROOT / "solutions" / LESSON, as_version=4)
    return sol.cells[exercise_index(sol)].source


def student_notebook(answer=None, before_check=None, check=None, forged_output=False):
    """Lesson 0's practice notebook as a student might leave it."""
    nb = nbformat.read(ROOT / "labs" / LESSON, as_version=4)
    ex = exercise_index(nb)
    if answer is not None:
        nb.cells[ex].source = answer
    if check is not None:
        nb.cells[ex + 1].source = check
    if forged_output:   # what lab/collect.py used to count as passed
        nb.cells[ex + 1].outputs = [nbformat.v4.new_output(
            "stream", name="stdout", text="Exercise 0.1 passed\n")]
    if before_check is not None:
        nb.cells.insert(ex + 1, nbformat.v4.new_code_cell(before_check))
    return nb


def student(homes: Path, name: str, nb=None, filename: str = LESSON) -> Path:
    folder = homes / name / "lstm-course"
    folder.mkdir(parents=True, exist_ok=True)
    if nb is not None:
        nbformat.write(nb, folder / filename)
    return folder


def kernel_owner():
    """nobody when running as root and nobody can run this Python; else None (the test's user)."""
    if not AS_ROOT:
        return None
    owner = grade.grading_user(None)
    try:
        grade.check_user_can_run(grade.Settings(owner=owner))
    except SystemExit:
        return None
    return owner


WRONG = ("import numpy as np\n\n\ndef unigram_log_probs(train_ids, vocab_size):\n"
         "    counts = np.bincount(train_ids, minlength=vocab_size)   # no +1: log(0)\n"
         "    return np.log(counts / counts.sum())\n")
# Also leaves a process behind that is no longer the kernel's child (the grader must kill it).
LIMITS_PROBE = ("import os, resource, subprocess\n"
                "subprocess.run(['sh', '-c', 'setsid sleep 3131 >/dev/null 2>&1 &'])\n"
                "print('uid', os.getuid(), 'address space', "
                "resource.getrlimit(resource.RLIMIT_AS)[0])\n"
                "try:\n    hog = bytearray(3 * 2**30)\nexcept MemoryError:\n"
                "    print('MemoryError')\n")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("grading")
    homes, out, outside = base / "homes", base / "grades", base / "outside"
    solved = solution_source()
    student(homes, "solved", student_notebook(solved))
    student(homes, "placeholder", student_notebook())
    student(homes, "wrong", student_notebook(WRONG))
    student(homes, "forger", student_notebook(check='print("Exercise 0.1 passed")',
                                              forged_output=True))
    student(homes, "hang", student_notebook(solved, before_check="while True:\n    pass"))
    student(homes, "crash", student_notebook(
        solved, before_check="import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"))
    student(homes, "hog", student_notebook(solved, before_check=LIMITS_PROBE))
    # A solved notebook outside the folder, behind a link; a FIFO that would block a reader.
    outside.mkdir()
    nbformat.write(student_notebook(solved), outside / "solved.ipynb")
    folder = student(homes, "linker", student_notebook())
    (folder / "copied.ipynb").symlink_to(outside / "solved.ipynb")
    (folder / "elsewhere").symlink_to(outside, target_is_directory=True)
    os.mkfifo(folder / "pipe.ipynb")

    owner, log = kernel_owner(), []
    settings = grade.Settings(seconds=TIME_LIMIT, memory=MEMORY, owner=owner)
    started = time.monotonic()
    grade.grade(homes, out, settings, lessons=["0"], log=log.append)
    elapsed = time.monotonic() - started
    print(f"graded 8 students in {elapsed:.1f} s; kernels as uid "
          f"{owner[0] if owner else os.geteuid()}", *log, sep="\n")
    rows = {row["student"]: row for row in csv.DictReader(open(out / "gradebook.csv"))}
    return {"out": out, "rows": rows, "log": log, "owner": owner, "elapsed": elapsed}


def feedback(graded, name: str) -> str:
    return (graded["out"] / "feedback" / f"{name}.txt").read_text()


def test_the_gradebook_scores_only_checks_that_pass_when_re_run(graded):
    scores = {name: (row["0.1"], row["total"]) for name, row in graded["rows"].items()}
    assert scores == {"solved": ("1", "1"), "hog": ("1", "1"), "placeholder": ("0", "0"),
                      "wrong": ("0", "0"), "forger": ("0", "0"), "hang": ("0", "0"),
                      "crash": ("0", "0"), "linker": ("0", "0")}
    header = next(csv.reader(open(graded["out"] / "gradebook.csv")))
    assert header == ["student", "0.1", "total"]


def test_feedback_says_what_passed_and_why_the_rest_did_not(graded):
    assert "Passed 1 of 1 exercises." in feedback(graded, "solved")
    assert re.search(r"0\.1 +passed +\(00_intro\.ipynb\)", feedback(graded, "solved"))
    assert re.search(r"0\.1 +not done +ExerciseNotDone: Exercise 0\.1 \(a unigram model\) is "
                     r"not implemented yet", feedback(graded, "placeholder"))
    wrong = feedback(graded, "wrong")
    assert re.search(r"0\.1 +failed +ExerciseFailed: Exercise 0\.1 .*NaN or inf", wrong)
    assert "Passed 0 of 1 exercises." in wrong
    # The forged line printed by the student's cell and saved in its output changes nothing.
    assert re.search(r"0\.1 +not done +ExerciseNotDone", feedback(graded, "forger"))


def test_a_hanging_notebook_is_stopped_at_its_time_limit_and_a_dead_kernel_reported(graded):
    hang = feedback(graded, "hang")
    assert re.search(rf"0\.1 +not run +00_intro\.ipynb stopped before this check: the time "
                     rf"limit of {TIME_LIMIT} s per notebook was reached", hang)
    took = next(line for i, line in enumerate(graded["log"])
                if "00_intro.ipynb" in line and graded["log"][i - 1] == "hang:")
    assert float(re.search(r"([\d.]+) s", took)[1]) < TIME_LIMIT + 15, took
    assert "its kernel died" in feedback(graded, "crash")
    # Every other student was graded after both; nothing was left running.
    assert list(graded["rows"]) == sorted(graded["rows"])
    for leftover in (r"lstm-grade-.*/kernel\.json", "sleep 3131"):
        left = subprocess.run(["pgrep", "-f", leftover], capture_output=True, text=True)
        assert not left.stdout.split(), f"still running: {leftover}"


def test_links_and_fifos_are_neither_followed_nor_copied(graded):
    text = feedback(graded, "linker")
    assert "copied.ipynb: a symbolic link, not copied" in text
    assert "elsewhere: a symbolic link, not followed" in text
    assert "pipe.ipynb: not a regular file (a FIFO, socket or device), not copied" in text
    executed = graded["out"] / "executed" / "linker"
    assert sorted(p.name for p in executed.iterdir()) == [LESSON]


def test_kernels_run_with_the_memory_limit_as_the_grading_user(graded):
    nb = nbformat.read(graded["out"] / "executed" / "hog" / LESSON, as_version=4)
    printed = "".join(o.get("text", "") for c in code_cells(nb) for o in c.outputs)
    uid = graded["owner"][0] if graded["owner"] else os.geteuid()
    assert f"uid {uid} address space {MEMORY}" in printed
    assert "MemoryError" in printed
    # The executed copy shows the check the grader added, and that it passed.
    added = [c for c in code_cells(nb) if c.metadata.get(grade.GRADER_KEY) == "0.1"]
    assert len(added) == 1 and "Exercise 0.1 passed" in added[0].outputs[0]["text"]


def test_the_check_goes_where_the_exercise_is_even_with_cells_moved_or_edited():
    exercises = grade.course_exercises()
    nb = student_notebook(before_check="print('scratch work')")
    assert grade.add_checks(nb, {"0.1": exercises["0.1"]}) == ["0.1"]
    ex = exercise_index(nb)
    # After the student's own check cell, which may come after cells of theirs.
    assert nb.cells[ex + 2].source.strip() == exercises["0.1"].check
    assert nb.cells[ex + 3].metadata[grade.GRADER_KEY] == "0.1"
    assert "from lstmbook.checks import intro as check" in nb.cells[ex + 3].source
    # Metadata lost (the cells were pasted into a new notebook): the check cell still anchors it.
    nb = student_notebook()
    for cell in nb.cells:
        cell.metadata.pop("exercise", None)
    assert grade.add_checks(nb, exercises) == ["0.1"]
    # Neither the exercise nor its check: nothing to grade in that notebook.
    nb = student_notebook()
    del nb.cells[exercise_index(nb): exercise_index(nb) + 2]
    assert grade.add_checks(nb, exercises) == []


def test_copy_takes_regular_files_only_and_limits_their_size(tmp_path):
    source, dest = tmp_path / "source", tmp_path / "dest"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "notes.txt").write_text("mine")
    (source / "big.bin").write_bytes(b"x" * 2048)
    (source / "link.txt").symlink_to("/etc/hostname")
    (source / "dangling").symlink_to(tmp_path / "nowhere")
    (source / ".ipynb_checkpoints").mkdir()
    os.mkfifo(source / "fifo")
    dest.mkdir()
    notes = grade.copy_regular_files(source, dest, grade.Settings(max_file=1024))
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    assert copied == ["sub", "sub/notes.txt"]
    assert sorted(notes) == ["big.bin: larger than 1 kB, not copied",
                             "dangling: a symbolic link, not copied",
                             "fifo: not a regular file (a FIFO, socket or device), not copied",
                             "link.txt: a symbolic link, not copied"]


@pytest.mark.skipif(not AS_ROOT or not os.path.exists(SYSTEM_PYTHON),
                    reason="switching users needs root")
def test_the_launcher_runs_as_nobody_with_lowered_limits():
    owner = grade.grading_user(None)
    settings = grade.Settings(seconds=30, memory=MEMORY, owner=owner)
    probe = ("import os, resource; print(os.getuid(), os.getgid(), os.getgroups(), "
             "resource.getrlimit(resource.RLIMIT_AS), resource.getrlimit(resource.RLIMIT_CORE))")
    with grade.work_folder(owner) as work:
        done = subprocess.run(
            grade.limited([SYSTEM_PYTHON, "-c", probe], settings, python=SYSTEM_PYTHON),
            cwd=work, env=grade.kernel_env(work, settings), capture_output=True, text=True,
            timeout=60, **grade.run_as(owner))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(None, 3)[:3] == [str(owner[0]), str(owner[1]), "[]"]
    assert f"({MEMORY}, {MEMORY}) (0, 0)" in done.stdout


@pytest.mark.skipif(not AS_ROOT, reason="switching users needs root")
def test_the_kernel_can_read_its_connection_file_and_nothing_else_of_the_grader(tmp_path):
    owner = grade.grading_user(None)
    settings = grade.Settings(owner=owner)
    with grade.work_folder(owner) as work:
        assert work.stat().st_uid == owner[0] and oct(work.stat().st_mode)[-3:] == "700"
        km = grade.StudentKernelManager(settings, work)
        km.write_connection_file()
        assert Path(km.connection_file).stat().st_uid == owner[0]
        env = grade.kernel_env(work, settings)
    assert env["HOME"] == str(work) and "JUPYTERHUB_API_TOKEN" not in env
    assert env["PYTHONSAFEPATH"] == "1"   # a numpy.py in the student's folder is not imported


def test_students_code_never_runs_as_root():
    with pytest.raises(SystemExit, match="root"):
        grade.grading_user("root")
    if AS_ROOT:
        assert grade.grading_user(None)[0] != 0
        with pytest.raises(SystemExit, match="useradd"):
            grade.grading_user("no-such-user-here")


@pytest.mark.skipif(not AS_ROOT, reason="switching users needs root")
def test_a_python_the_grading_user_cannot_run_is_reported_with_the_fix(tmp_path, monkeypatch):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "python").symlink_to(sys.executable)
    monkeypatch.setattr(sys, "executable", str(private / "python"))
    with pytest.raises(SystemExit, match=r"nobody cannot run the course's Python .*chmod"):
        grade.check_user_can_run(grade.Settings(owner=grade.grading_user(None)))


def test_the_command_line_says_how_to_fix_a_missing_folder(tmp_path, capsys):
    with pytest.raises(SystemExit, match="No folder .*_build/hub/users"):
        grade.main([str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="make hub"):
        grade.grade(tmp_path, tmp_path / "out", grade.Settings())
    with pytest.raises(SystemExit):
        grade.main([str(tmp_path), "--out", str(tmp_path / "out"), "--memory", "lots"])
    assert "is not a size" in capsys.readouterr().err


def test_make_grade_grades_the_trial_hubs_folders():
    plan = subprocess.run(["make", "-n", "grade"], cwd=ROOT, capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr
    assert re.search(r"lab/grade\.py \S*_build/hub/users --out \S*_build/grades", plan.stdout)

