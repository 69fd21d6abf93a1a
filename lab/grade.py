"""Grade the class by re-running every student's notebooks with the course's own checks.

    sudo .venv/bin/python lab/grade.py /var/lib/private --out ~/grades-2026-11-30   # a class
    make grade                      # the `make hub` trial: _build/hub/users -> _build/grades

HOMES holds one folder per student with their copy of the labs in lstm-course/
(/var/lib/private/lstm-<name> under SystemdSpawner, /home/<name> under LocalProcessSpawner,
_build/hub/users/<name> in the trial). For each student the grader

1. copies the regular files of lstm-course/ into a fresh temporary folder: never a symbolic link,
   a FIFO or a device, and no file over --max-file;
2. adds after each exercise of each notebook the course's check cell, taken from labs/, so an
   edited or deleted check cell, a saved output or a printed "Exercise 0.1 passed" changes nothing
   (nbgrader's autograde restores its test cells the same way);
3. runs each notebook at the top of lstm-course/ that holds an exercise in a new kernel, in quick
   mode, under a time limit per notebook and a memory limit, as --user (nobody) when root;
4. scores an exercise 1 when that check ran to its end without raising, in any of the notebooks.

It writes OUT/gradebook.csv (one row per student, 1 or 0 per exercise, a total),
OUT/feedback/<name>.txt (what passed, the first line of each failure) and the executed notebooks
in OUT/executed/<name>/, to read when a score surprises you.

Limits of the method: the checks run inside the student's kernel, so code written to tamper with
the kernel or with lstmbook.checks can still fake a pass, as with nbgrader; read the executed
notebook of a surprising score.
"""
import argparse
import csv
import math
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import nbformat
import psutil
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

COURSE = Path(__file__).resolve().parent.parent
LABS = COURSE / "labs"
COURSE_FOLDER = "lstm-course"           # each student's copy: HOMES/<name>/lstm-course
GRADER_KEY = "lstm_grader"              # metadata of the check cells the grader adds
RUN_MARK = "LSTM_GRADE_RUN"             # in each kernel's environment: finds what it left behind
CHECK_IMPORT = re.compile(r"(from lstmbook\.checks import |import lstmbook\.checks)")
NOT_COPIED = {".ipynb_checkpoints", "__pycache__"}   # JupyterLab's and Python's caches
# Best first: a student's result for an exercise is the best over their notebooks.
RANK = {"passed": 4, "failed": 3, "not done": 2, "not run": 1, "missing": 0}
MB = 2**20


@dataclass(frozen=True)
class Settings:
    seconds: int = 300              # per notebook, from kernel start to the last cell
    memory: int = 4 * 2**30         # address space of each kernel (RLIMIT_AS), bytes
    max_file: int = 20 * MB         # a larger file in a student's folder is not copied
    max_total: int = 200 * MB       # nor anything past this much per student
    max_files: int = 2000
    max_output: int = 5 * MB        # outputs kept per executed notebook (the rest is dropped)
    max_written: int = 1024 * MB    # largest file a kernel may write (RLIMIT_FSIZE)
    quick: bool = True              # LSTMBOOK_QUICK=1: same checks, short training loops
    owner: tuple | None = None      # (uid, gid) that runs students' code; None: this process's


@dataclass(frozen=True)
class Exercise:
    number: str
    check: str          # the check cell's source, as in labs/
    imports: str        # the lines of that lesson that import its checks module


@dataclass
class Result:
    status: str         # one of RANK
    message: str = ""
    notebook: str = ""


@dataclass
class StudentReport:
    results: dict
    notes: list = field(default_factory=list)     # files left out, notebooks that did not run


# --- the course's exercises and their checks -----------------------------------------------------

def course_exercises(labs: Path = LABS) -> dict[str, Exercise]:
    """Every exercise of the course in order, with the check cell that follows it in labs/."""
    exercises = {}
    for path in sorted(labs.glob("*.ipynb")):
        cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        imports = "\n".join(line for cell in cells for line in cell.source.splitlines()
                            if CHECK_IMPORT.match(line))
        for cell, after in zip(cells, cells[1:]):
            number = cell.metadata.get("exercise")
            if number and number not in exercises:
                exercises[number] = Exercise(number, after.source.strip(), imports)
    if not exercises:
        raise SystemExit(f"No exercises found in {labs}: regenerate the practice notebooks "
                         "with `make sync`.")
    return exercises


def select_lessons(exercises: dict, lessons) -> dict:
    if not lessons:
        return exercises
    wanted = {str(int(n)) if n.isdigit() else n for n in lessons}   # "02" is lesson 2
    chosen = {n: e for n, e in exercises.items() if n.split(".")[0] in wanted}
    if not chosen:
        raise SystemExit(f"No exercise belongs to lessons {' '.join(lessons)}; the course's "
                         f"exercises are {' '.join(exercises)}.")
    return chosen


def add_checks(nb, exercises: dict) -> list[str]:
    """Insert the course's check cell after each exercise of ``nb``; return their numbers.

    The check goes after the student's own check cell when it is still there (so their cell
    runs as they wrote it, then ours), else right after the cell whose metadata names the
    exercise. A notebook that lost that metadata is still graded where its check cell is.
    """
    cells, anchors = nb.cells, {}
    code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
    for i in code:
        number = cells[i].metadata.get("exercise")
        if number in exercises and number not in anchors:
            anchors[number] = _own_check(cells, i, exercises[number]) or i
    for number, exercise in exercises.items():
        if number not in anchors:
            found = [i for i in code if cells[i].source.strip() == exercise.check]
            if found:
                anchors[number] = found[0]
    for number, index in sorted(anchors.items(), key=lambda item: -item[1]):
        cells.insert(index + 1, check_cell(exercises[number], nb.nbformat_minor))
    return sorted(anchors, key=anchors.get)


def _own_check(cells, start: int, exercise: Exercise):
    """The index of the student's check cell for ``exercise`` after ``start``, if they kept it."""
    for i in range(start + 1, len(cells)):
        if cells[i].cell_type == "code" and cells[i].metadata.get("exercise"):
            return None
        if cells[i].cell_type == "code" and cells[i].source.strip() == exercise.check:
            return i
    return None


def check_cell(exercise: Exercise, minor: int):
    source = (f"# Added by lab/grade.py: the course's check of exercise {exercise.number}\n"
              f"{exercise.imports}\n{exercise.check}")
    cell = nbformat.v4.new_code_cell(source, metadata={GRADER_KEY: exercise.number})
    if minor < 5:
        del cell["id"]   # cell ids exist from format 4.5 on; older notebooks must not have one
    return cell


# --- copying a student's folder ------------------------------------------------------------------

def copy_regular_files(source: Path, dest: Path, settings: Settings) -> list[str]:
    """Copy the regular files under ``source`` into ``dest``; return a note per entry left out.

    Nothing is followed or opened that is not a regular file: a symbolic link could point at
    another student's or root's files, a FIFO would block the copy. The walk holds each folder
    open (os.fwalk) and opens files with O_NOFOLLOW, so a link swapped in mid-copy is refused too.
    """
    notes, total, count = [], 0, 0

    def unreadable(err: OSError) -> None:
        notes.append(f"{_shown(err.filename or '?')}: folder unreadable ({err.strerror}), "
                     "not copied")

    for folder, dirs, files, dirfd in os.fwalk(source, onerror=unreadable):
        rel = Path(folder).relative_to(source)
        _make_folder(dest / rel, settings.owner)
        for name in list(dirs):
            if name in NOT_COPIED or _is_link(name, dirfd):
                dirs.remove(name)
                if name not in NOT_COPIED:
                    notes.append(f"{_shown(rel / name)}: a symbolic link, not followed")
        for name in files:
            if count >= settings.max_files:
                notes.append(f"more than {settings.max_files} files: the rest were not copied")
                return notes
            data, why = _read_regular(name, dirfd, settings.max_file)
            if why is None and total + len(data) > settings.max_total:
                why = f"over the {_size(settings.max_total)} copied per student"
            if why:
                notes.append(f"{_shown(rel / name)}: {why}, not copied")
                continue
            _write(dest / rel / name, data, settings.owner)
            total, count = total + len(data), count + 1
    return notes


def _is_link(name: str, dirfd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode)
    except OSError:   # gone since the listing: nothing to copy either
        return True


def _read_regular(name: str, dirfd: int, limit: int):
    """(bytes, None) for a regular file of at most ``limit`` bytes, else (b"", why not)."""
    try:
        mode = os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            return b"", "a symbolic link"
        if not stat.S_ISREG(mode):
            return b"", "not a regular file (a FIFO, socket or device)"
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
    except OSError as err:
        return b"", f"unreadable ({err.strerror})"
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):   # replaced between the stat and the open
            return b"", "not a regular file"
        data = f.read(limit + 1)
    if len(data) > limit:
        return b"", f"larger than {_size(limit)}"
    return data, None


def _make_folder(path: Path, owner) -> None:
    path.mkdir(mode=0o700, exist_ok=True)
    if owner:
        os.chown(path, *owner)


def _write(path: Path, data: bytes, owner) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        if owner:
            os.fchown(fd, *owner)   # the student's code may rewrite its own files, as at home
        f.write(data)


def _size(n: int) -> str:
    return f"{n / MB:.0f} MB" if n >= MB else f"{n / 1024:.0f} kB"


def _shown(path) -> str:
    """A student's file name, safe to print on one line."""
    return "".join(c if c.isprintable() else "?" for c in str(path))


@contextmanager
def work_folder(owner):
    """A fresh private folder for one student, owned by the user that runs their code."""
    path = Path(tempfile.mkdtemp(prefix="lstm-grade-"))
    try:
        if owner:
            os.chown(path, *owner)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- running one notebook ------------------------------------------------------------------------

def kernel_env(work: Path, settings: Settings) -> dict:
    """The kernel's whole environment: nothing of the grader's (tokens, root's HOME) leaks in."""
    home = str(work)
    threads = "1"   # one thread per kernel: the same speed whatever else runs on the machine
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
        # The course's lstmbook, and not the student's folder, on the import path: a numpy.py or
        # lstmbook/ of theirs cannot stand in for the real ones.
        "PYTHONPATH": str(COURSE), "PYTHONSAFEPATH": "1", "PYTHONDONTWRITEBYTECODE": "1",
        "MPLCONFIGDIR": f"{home}/.config/matplotlib", "IPYTHONDIR": f"{home}/.ipython",
        "LSTMBOOK_QUICK": "1" if settings.quick else "0", "LSTMBOOK_PROGRESS": "text",
        "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads, "TF_NUM_INTRAOP_THREADS": threads,
        "TF_NUM_INTEROP_THREADS": threads,
        "MALLOC_ARENA_MAX": "2",   # glibc's per-thread arenas would eat the address-space limit
    }


# The first step of every kernel, already as the grading user: lower the limits, then become the
# kernel (limits survive exec and pass to anything the kernel starts). Standard library only, run
# as `python -c`, so it adds milliseconds to a kernel's start. Arguments: four limits, a command.
LIMITS_LAUNCHER = """
import os, resource, sys
names = ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_CORE")
for name, value in zip(names, map(int, sys.argv[1:5])):
    limit = getattr(resource, name)
    hard = resource.getrlimit(limit)[1]
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(limit, (value, value))
os.execv(sys.argv[5], sys.argv[5:])
"""


def limited(command: list[str], settings: Settings, python: str | None = None) -> list[str]:
    """``command`` started through the limits launcher (run by ``python``, this one by default)."""
    # CPU time only stops a process that escaped the wall-clock kill; a kernel never reaches it.
    cpu = 2 * settings.seconds + 60
    return [python or sys.executable, "-c", LIMITS_LAUNCHER, str(settings.memory), str(cpu),
            str(settings.max_written), "0", *command]


class StudentKernelManager(AsyncKernelManager):
    """A kernel of the course's own Python (never a kernel spec found in someone's home) that
    starts through this file's launcher, which applies the limits, as the grading user."""

    def __init__(self, settings: Settings, work: Path):
        # IPC sockets in the student's work folder rather than TCP ports on 127.0.0.1, which
        # every local user could reach.
        super().__init__(transport="ipc", ip=str(work / "kernel"),
                         connection_file=str(work / "kernel.json"))
        self.settings = settings

    def format_kernel_cmd(self, extra_arguments=None) -> list[str]:
        return limited([sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file,
                        *(extra_arguments or [])], self.settings)

    def write_connection_file(self, **kwargs) -> None:
        super().write_connection_file(**kwargs)
        if self.settings.owner:   # the kernel, as the grading user, must read its own keys
            os.chown(self.connection_file, *self.settings.owner)


class GradingClient(NotebookClient):
    """nbclient's executor, recording each added check's reply and keeping outputs bounded."""

    def __init__(self, nb, km, settings: Settings):
        deadline = time.monotonic() + settings.seconds
        super().__init__(nb, km=km, allow_errors=True, startup_timeout=60, record_timing=False,
                         timeout_func=lambda cell: max(1, math.ceil(deadline - time.monotonic())),
                         on_cell_executed=self._record)
        self.settings = settings
        self.replies, self.printed, self.output_size = {}, set(), 0

    def _record(self, cell, execute_reply, **_) -> None:
        number = cell.metadata.get(GRADER_KEY)
        if number and execute_reply:
            self.replies[number] = execute_reply.get("content", {})

    def output(self, outs, msg, display_id, cell_index):
        number = self.nb.cells[cell_index].metadata.get(GRADER_KEY)
        if number and f"Exercise {number} passed" in msg["content"].get("text", ""):
            self.printed.add(number)
        # A notebook printing in a loop must not fill the grader's memory or the saved copy.
        self.output_size += len(str(msg["content"]))
        if self.output_size > self.settings.max_output and msg["msg_type"] != "error":
            return None
        return super().output(outs, msg, display_id, cell_index)

    def result(self, number: str, notebook: str, stopped: str | None) -> Result:
        reply = self.replies.get(number)
        if reply is None:
            return Result("not run", f"{notebook} stopped before this check: "
                          f"{stopped or 'the check did not run'}", notebook)
        if reply.get("status") == "ok":
            if number in self.printed:
                return Result("passed", "", notebook)
            return Result("failed", f"the check ran but never printed 'Exercise {number} "
                          "passed': does the notebook change lstmbook.checks?", notebook)
        ename, evalue = reply.get("ename", "Error"), _first_line(reply.get("evalue", ""))
        status = "not done" if ename in ("ExerciseNotDone", "NotImplementedError") else "failed"
        return Result(status, f"{ename}: {evalue}", notebook)


def _first_line(text: str, limit: int = 300) -> str:
    line = next((s.strip() for s in str(text).splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[:limit] + "..."


def run_as(owner) -> dict:
    """Popen arguments that start the kernel as ``owner`` with no supplementary groups."""
    if not owner:
        return {}
    return {"user": owner[0], "group": owner[1], "extra_groups": [], "umask": 0o077}


def run_notebook(name: str, text: bytes, work: Path, exercises: dict, settings: Settings):
    """Run one notebook with the course's checks added: (results, executed nb, note)."""
    try:
        nb = nbformat.reads(text.decode(), as_version=4)
    except Exception as err:   # whatever a damaged file raises, it is the student's to fix
        return {}, None, f"{_shown(name)} could not be read as a notebook: {_first_line(err)}"
    numbers = add_checks(nb, exercises)
    if not numbers:
        return {}, None, None
    km, run = StudentKernelManager(settings, work), secrets.token_hex(8)
    client, stopped = GradingClient(nb, km, settings), None
    try:
        # The kernel's own output goes nowhere: what a notebook prints is in its cells.
        client.execute(cwd=str(work), env={**kernel_env(work, settings), RUN_MARK: run},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       **run_as(settings.owner))
    except CellTimeoutError:
        stopped = f"the time limit of {settings.seconds} s per notebook was reached"
    except DeadKernelError:
        stopped = (f"its kernel died (a crash, or more than the memory limit of "
                   f"{settings.memory / 2**30:g} GB)")
    except Exception as err:   # a kernel that would not start, a malformed cell
        stopped = f"it could not run: {type(err).__name__}: {_first_line(err)}"
    finally:
        stop_kernel(client, km, run, settings.owner[0] if settings.owner else os.getuid())
    note = f"{_shown(name)}: {stopped}" if stopped else None
    return {n: client.result(n, name, stopped) for n in numbers}, nb, note


def stop_kernel(client: NotebookClient, km: AsyncKernelManager, run: str, uid: int) -> None:
    """Kill the kernel and whatever it started: no student process outlives its grading (one
    left running could tamper with the next student's folder, which the same user owns)."""
    process = getattr(km.provisioner, "process", None) if km.provisioner else None
    family = []
    if process is not None:
        try:
            family = psutil.Process(process.pid).children(recursive=True)
        except psutil.Error:
            pass
    try:
        if client.kc is not None:
            client.kc.stop_channels()
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)   # SIGKILL to the kernel's process group
    except Exception:   # already gone; the sweep below still runs
        pass
    # Children that started a session of their own escape the group kill; daemons that left
    # the family still carry the run's mark in their environment.
    same_user = [p for p in psutil.process_iter(["uids"])
                 if p.info["uids"] and p.info["uids"].real == uid]
    for p in family + same_user:
        try:
            if p in family or p.environ().get(RUN_MARK) == run:
                p.kill()
        except psutil.Error:
            pass


# --- a student, the class ------------------------------------------------------------------------

def student_folders(homes: Path, only=None) -> list[tuple[str, Path]]:
    """(name, HOMES/<name>/lstm-course) for each real folder; links are not followed."""
    found = []
    for home in sorted(homes.iterdir()):
        course = home / COURSE_FOLDER
        if only and home.name not in only:
            continue
        if (not home.is_symlink() and home.is_dir() and not course.is_symlink()
                and course.is_dir()):
            found.append((home.name, course))
    return found


def grade_student(folder: Path, exercises: dict, settings: Settings, executed: Path,
                  log=print) -> StudentReport:
    report = StudentReport({})
    with work_folder(settings.owner) as work:
        report.notes += copy_regular_files(folder, work, settings)
        # Read every notebook now, before any student code runs and could swap one for a link
        # to a file only root may read.
        notebooks = {p.name: p.read_bytes() for p in sorted(work.glob("*.ipynb"))
                     if p.is_file() and not p.is_symlink()}
        for name, text in notebooks.items():
            started = time.monotonic()
            results, nb, note = run_notebook(name, text, work, exercises, settings)
            if note:
                report.notes.append(note)
            if nb is None:
                continue
            log(f"    {name}: {time.monotonic() - started:.1f} s")
            for number, result in results.items():
                best = report.results.get(number)
                if best is None or RANK[result.status] > RANK[best.status]:
                    report.results[number] = result
            save_executed(nb, executed / name)
    for number in exercises:
        report.results.setdefault(number, Result(
            "missing", f"no notebook in {COURSE_FOLDER}/ holds this exercise"))
    return report


def save_executed(nb, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        nbformat.write(nb, path)
    except Exception as err:   # a damaged notebook is still graded; only its copy is missing
        path.with_suffix(".txt").write_text(f"could not save the executed notebook: {err}\n")


def write_gradebook(path: Path, reports: dict, numbers: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *numbers, "total"])
        for student, report in reports.items():
            marks = [int(report.results[n].status == "passed") for n in numbers]
            writer.writerow([student, *marks, sum(marks)])


def feedback(student: str, report: StudentReport, numbers: list[str], settings: Settings) -> str:
    passed = sum(report.results[n].status == "passed" for n in numbers)
    mode = "quick mode" if settings.quick else "full mode"
    lines = [f"LSTMs from scratch: feedback for {student}",
             f"Graded {datetime.now():%Y-%m-%d %H:%M} by re-running your notebooks with the "
             f"course's checks ({mode}).",
             f"Passed {passed} of {len(numbers)} exercises.", ""]
    for number in numbers:
        result = report.results[number]
        where = f" ({result.notebook})" if result.status == "passed" else ""
        detail = f"  {_shown(result.message)}" if result.message else ""
        lines.append(f"{number:>5}  {result.status:8}{where}{detail}")
    if report.notes:
        lines += ["", "Notes:"] + [f"  {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def grade(homes: Path, out: Path, settings: Settings, *, lessons=None, students=None,
          labs: Path = LABS, log=print) -> dict:
    """Grade every student folder under ``homes``; write the gradebook and feedback to ``out``."""
    exercises = select_lessons(course_exercises(labs), lessons)
    try:
        folders = student_folders(homes, students)
    except PermissionError:
        raise SystemExit(f"Cannot read the students' folders in {homes}: they are private to "
                         "each student. Run the grader as root (sudo).") from None
    if not folders:
        raise SystemExit(f"No student folders ({homes}/<name>/{COURSE_FOLDER}/) found. For the "
                         "trial hub, run `make hub` and have a test student log in once first.")
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    reports, numbers = {}, list(exercises)
    for student, folder in folders:
        log(f"{student}:")
        reports[student] = grade_student(folder, exercises, settings,
                                         out / "executed" / student, log)
        text = feedback(student, reports[student], numbers, settings)
        (out / "feedback" / f"{student}.txt").write_text(text)
        log("    " + text.splitlines()[2])
    write_gradebook(out / "gradebook.csv", reports, numbers)
    return reports


# --- who runs the students' code -----------------------------------------------------------------

def grading_user(name: str | None):
    """(uid, gid) to run students' code as, or None for this process's own (unprivileged) user.

    As root the grader always switches to an unprivileged user; it never runs students' code as
    root, so it refuses a user with uid 0."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name
        if name and name != me:
            raise SystemExit(f"--user {name}: only root can run the students' code as another "
                             f"user. Run the grader with sudo, or leave out --user to run it as "
                             f"{me}.")
        return None
    name = name or "nobody"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise SystemExit(f"No user {name!r} on this machine to run the students' code (the "
                         "grader never runs it as root). Create one: `useradd --system "
                         "--no-create-home lstm-grader`, then pass --user lstm-grader.") from None
    if entry.pw_uid == 0:
        raise SystemExit(f"--user {name} is root: the students' code never runs as root. Use an "
                         "unprivileged user (the default, nobody, or one made with `useradd "
                         "--system --no-create-home lstm-grader`).")
    return entry.pw_uid, entry.pw_gid


def check_user_can_run(settings: Settings) -> None:
    """Fail early, with the fix, when the grading user cannot read the course or its Python."""
    with work_folder(settings.owner) as work:
        try:
            probe = subprocess.run(
                limited([sys.executable, "-c", "import ipykernel, lstmbook.checks"], settings),
                cwd=work, env=kernel_env(work, settings), capture_output=True, text=True,
                timeout=120, **run_as(settings.owner))
            why = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        except OSError as err:
            probe, why = None, f"{err.strerror}: {err.filename}"
    if probe is None or probe.returncode != 0:
        who = pwd.getpwuid(settings.owner[0]).pw_name if settings.owner else "this user"
        raise SystemExit(
            f"{who} cannot run the course's Python ({why}). The kernels need the course "
            f"({COURSE}), its environment ({sys.prefix}) and the Python it was made from "
            f"({sys.base_prefix}) readable by all, with every folder above them; "
            f"`chmod -R o+rX` them, or install the course in /srv as the instructor guide says.")


def size(text: str) -> int:
    """Bytes from '4G', '512M' or a plain number."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]?)B?", text.strip().upper())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: write e.g. 4G or 512M")
    return int(float(match[1]) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[match[2]])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("homes", type=Path, help="folder holding one home folder per student")
    parser.add_argument("--out", type=Path, required=True,
                        help="where to write gradebook.csv, feedback/ and executed/")
    parser.add_argument("--lessons", nargs="+", metavar="N",
                        help="grade these lessons only (e.g. --lessons 0 1 2)")
    parser.add_argument("--students", nargs="+", metavar="NAME", help="grade these only")
    parser.add_argument("--user", help="run the students' code as this user when root "
                        "(default: nobody)")
    parser.add_argument("--time-limit", type=int, default=Settings.seconds, metavar="SECONDS",
                        help="per notebook (default %(default)s)")
    parser.add_argument("--memory", type=size, default=Settings.memory,
                        help="address space per kernel (default 4G)")
    parser.add_argument("--max-file", type=size, default=Settings.max_file,
                        help="larger files in a student's folder are not copied (default 20M)")
    parser.add_argument("--full", action="store_true",
                        help="full-length training instead of quick mode (the checks are "
                        "the same; much slower)")
    args = parser.parse_args(argv)
    if not args.homes.is_dir():
        raise SystemExit(f"No folder {args.homes}: give the folder holding the students' homes "
                         "(/var/lib/private on a class hub, _build/hub/users for `make hub`).")
    settings = Settings(seconds=args.time_limit, memory=args.memory, max_file=args.max_file,
                        quick=not args.full, owner=grading_user(args.user))
    if settings.owner is None:
        print("Not root: the students' code runs as you. On a class server, run the grader as "
              "root so it can switch to an unprivileged user.")
    check_user_can_run(settings)
    started = time.monotonic()
    reports = grade(args.homes, args.out, settings, lessons=args.lessons,
                    students=args.students)
    print(f"{len(reports)} students graded in {time.monotonic() - started:.0f} s: "
          f"{args.out / 'gradebook.csv'}, feedback in {args.out / 'feedback'}/")


if __name__ == "__main__":
    main()
