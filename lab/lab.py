"""``make lab``: JupyterLab on the student's own copy of the practice notebooks.

Safe by default: bound to 127.0.0.1 on a free port, with a random token printed once and handed
to JupyterLab in its environment (JUPYTER_TOKEN), never on its command line, which every user of
the machine can read. It refuses to run as root unless told to. Your answers live in
``my-work/`` (git-ignored), copied from ``labs/`` the first time and never overwritten
afterwards. The same code prepares each student's folder on the class JupyterHub
(``lab/jupyterhub_config.py`` starts every single-user server through ``hub-user`` below).

Subcommands (the Makefile's targets call them)::

    python lab/lab.py                 # make lab: sync my-work/, start JupyterLab
    python lab/lab.py update          # make lab-update: add new notebooks, keep edited ones
    python lab/lab.py reset NB        # make lab-reset NB=02_numpy_lstm: fresh copy + backup
    python lab/lab.py hub-user ARGS   # on a hub: sync ~/lstm-course, then the server

How updating never loses work: ``my-work/.lstm-course-sync.json`` records a SHA-256 of every
file as it was copied. A copy whose bytes still match that record was never touched, so it may
be replaced by a newer version from ``labs/``; a copy that differs (an answer, an output, a
saved checkpoint of any kind) is left exactly as it is, and the newer version is copied next to
it as ``<name>-update-<date>.ipynb``, once per version. Only ``reset`` replaces an edited copy,
and it keeps a backup first. A file that cannot be copied (a folder or a link in the way, a
permission) is reported and skipped; the rest of the update goes on.
"""
import argparse
import hashlib
import json
import os
import secrets
import shutil
import socket
import stat
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABS, WORK = ROOT / "labs", ROOT / "my-work"
GUIDE = ROOT / "book" / "lab_guide.md"
WORKSPACE = "lstm-course"              # the workspace shown at /lab/workspaces/lstm-course
MANIFEST = ".lstm-course-sync.json"    # hashes of the copies as made (hidden in JupyterLab)
BACKUPS = "backups"                    # reset keeps the replaced copy here, inside the work folder
HUB_FOLDER = "lstm-course"             # each hub user's copy: ~/lstm-course
PROBLEMS = "course-update-problems.txt"  # on a hub: what the copy step could not do, and why
# No news feed, no update check: JupyterLab then makes no requests to the internet on its own,
# and lab/jupyter-config (added to JUPYTER_CONFIG_PATH) turns off the question about news and
# opens a lesson's MyST source (book/*.md, what the book's launch button links to) as a notebook,
# through jupytext.
OFFLINE_ARGS = ["--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
CONFIG_PATH = ROOT / "lab" / "jupyter-config"


class LabError(Exception):
    """A mistake the user can fix; the message says how."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --- the student's copy -------------------------------------------------------------------------

def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy(src: Path, dst: Path) -> None:
    """Copy through a temporary file, so an interrupted copy never leaves half a notebook."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _read_manifest(work: Path) -> dict:
    try:
        data = json.loads((work / MANIFEST).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}   # no record: every existing copy counts as edited, the safe side


def _write_manifest(work: Path, copied: dict) -> None:
    tmp = work / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps(copied, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, work / MANIFEST)


@dataclass
class SyncReport:
    added: list = field(default_factory=list)    # new in labs/: copied
    updated: list = field(default_factory=list)  # never edited, newer in labs/: replaced
    kept: list = field(default_factory=list)     # edited, and labs/ has a newer version: untouched
    beside: list = field(default_factory=list)   # (edited copy, new version copied next to it)
    current: list = field(default_factory=list)  # same as labs/, or edited and labs/ unchanged
    problems: list = field(default_factory=list)  # what could not be done, and how to fix it

    def lines(self) -> list[str]:
        out = [f"added    {p.name}" for p in self.added]
        out += [f"updated  {p.name} (you had not changed it)" for p in self.updated]
        out += [f"new      {new.name}: the course's new version of {mine.name}, which you edited "
                f"(your {mine.name} is unchanged)" for mine, new in self.beside]
        out += [f"problem  {problem}" for problem in self.problems]
        return out


def _is_file(path: Path) -> bool:
    """A regular file, not a link: never read a FIFO (it blocks) or follow a link elsewhere."""
    return stat.S_ISREG(os.lstat(path).st_mode)


def _why(err: OSError) -> str:
    return f"{err.strerror} ({err.filename})" if err.strerror and err.filename else str(err)


def _update_name(work: Path, stem: str) -> Path:
    base = f"{stem}-update-{datetime.now():%Y-%m-%d}"
    path, n = work / f"{base}.ipynb", 1
    while os.path.lexists(path):
        n += 1
        path = work / f"{base}-{n}.ipynb"
    return path


def _put_beside(src: Path, dst: Path, new: str, copied: dict, report: SyncReport) -> None:
    """Copy a new version of an edited notebook next to it, once per version; an earlier such
    copy the student never opened and changed makes way for it."""
    prefix = f"{src.stem}-update-"
    earlier = {name: digest for name, digest in copied.items() if name.startswith(prefix)}
    if new in earlier.values():
        return   # this version was delivered before (and perhaps deleted: that is their choice)
    for name, digest in earlier.items():
        old = dst.parent / name
        if os.path.lexists(old) and _is_file(old) and _digest(old) == digest:
            old.unlink()
            del copied[name]
    target = _update_name(dst.parent, src.stem)
    _copy(src, target)
    copied[target.name] = new
    report.beside.append((dst, target))


def _sync_one(src: Path, work: Path, copied: dict, report: SyncReport) -> None:
    if not _is_file(src):
        report.problems.append(f"{src} in the course is not a regular file: skipped")
        return
    dst, new = work / src.name, _digest(src)
    if not os.path.lexists(dst):
        _copy(src, dst)
        report.added.append(dst)
    elif not _is_file(dst):
        report.problems.append(f"{dst.name} in your folder is a folder, a link or a special "
                               "file, so the course's notebook cannot go there: rename it")
        return
    else:
        have = _digest(dst)
        if have == new:
            report.current.append(dst)
        elif copied.get(src.name) == have:
            _copy(src, dst)
            report.updated.append(dst)
        elif copied.get(src.name) == new:
            report.current.append(dst)   # edited, and the course has not changed since
            return
        else:
            # Edited (or copied before records were kept): never touched, and its record is
            # left as it was, so it can never pass for an untouched copy later.
            report.kept.append(dst)
            _put_beside(src, dst, new, copied, report)
            return
    copied[src.name] = new


def sync_work(labs: Path = LABS, work: Path = WORK, extra=()) -> SyncReport:
    """Bring ``work`` up to date with the notebooks in ``labs`` (and ``extra`` files) safely.

    Missing copies are added; a copy still byte-for-byte as it was copied is replaced by a newer
    version; an edited copy is never touched, and a newer version lands next to it. A file that
    cannot be handled is reported in ``problems`` and the others go on.
    """
    labs, work = Path(labs), Path(work)
    sources = sorted(labs.glob("*.ipynb")) + [Path(p) for p in extra]
    if not sources:
        raise LabError(f"No practice notebooks in {labs}: run `make sync` to generate them.")
    report = SyncReport()
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        report.problems.append(f"cannot create the folder {work}: {_why(err)}")
        return report
    copied = _read_manifest(work)
    for src in sources:
        try:
            _sync_one(src, work, copied, report)
        except OSError as err:
            report.problems.append(f"{src.name} was not updated: {_why(err)}")
    try:
        _write_manifest(work, copied)
    except OSError as err:
        report.problems.append(f"the record of copies was not saved: {_why(err)}")
    return report


def add_new_notebooks(labs: Path = LABS, work: Path = WORK) -> list[Path]:
    """Sync ``work`` from ``labs`` (see ``sync_work``) and return the notebooks it added."""
    return sync_work(labs, work).added


def notebook_name(name: str) -> str:
    """'02_numpy_lstm', '02_numpy_lstm.ipynb' or 'my-work/02_numpy_lstm.ipynb' -> the file name"""
    stem = Path(name.strip()).name
    return stem if stem.endswith(".ipynb") else stem + ".ipynb"


def reset_notebook(name: str, labs: Path = LABS, work: Path = WORK):
    """Replace ``work/<name>`` by a fresh copy from ``labs``; back up an edited copy first.

    Returns ``(notebook, backup)``, ``backup`` being None when there was nothing to keep.
    """
    labs, work = Path(labs), Path(work)
    if not name or not name.strip():
        raise LabError("Say which notebook to reset, e.g. make lab-reset NB=00_intro")
    src = labs / notebook_name(name)
    if not src.is_file():
        names = ", ".join(p.stem for p in sorted(labs.glob("*.ipynb"))) or "none"
        raise LabError(f"No practice notebook {name!r} in {labs}. Choose one of: {names}")
    work.mkdir(parents=True, exist_ok=True)
    dst, backup = work / src.name, None
    if os.path.lexists(dst) and not _is_file(dst):
        raise LabError(f"{dst} is a folder, a link or a special file: rename it, then reset again")
    if dst.exists() and _digest(dst) != _digest(src):
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        (work / BACKUPS).mkdir(exist_ok=True)
        backup = work / BACKUPS / f"{src.stem}-{stamp}.ipynb"
        n = 1
        while backup.exists():
            n += 1
            backup = work / BACKUPS / f"{src.stem}-{stamp}-{n}.ipynb"
        shutil.copy2(dst, backup)
    _copy(src, dst)
    copied = _read_manifest(work)
    copied[src.name] = _digest(src)
    _write_manifest(work, copied)
    return dst, backup


# --- the workspace: lab guide on the left, first practice notebook on the right ------------------

def workspace(guide: str, notebook: str, browse: str) -> dict:
    """The workspace /lab/workspaces/lstm-course (paths relative to the server's root folder)."""
    guide_id, notebook_id = f"markdownviewer-widget:{guide}", f"notebook:{notebook}"
    return {
        "data": {
            "layout-restorer:data": {
                "main": {
                    "dock": {
                        "type": "split-area", "orientation": "horizontal", "sizes": [0.4, 0.6],
                        "children": [
                            {"type": "tab-area", "currentIndex": 0, "widgets": [guide_id]},
                            {"type": "tab-area", "currentIndex": 0, "widgets": [notebook_id]},
                        ],
                    },
                    "current": notebook_id,
                },
                "left": {"collapsed": False, "visible": True, "current": "filebrowser",
                         "widgets": ["filebrowser"]},
                "right": {"collapsed": True, "visible": True, "widgets": []},
                "relativeSizes": [0.16, 0.84, 0],
            },
            guide_id: {"data": {"path": guide, "factory": "Markdown Preview"}},
            notebook_id: {"data": {"path": notebook, "factory": "Notebook"}},
            "file-browser-filebrowser:cwd": {"path": browse},
        },
        "metadata": {"id": WORKSPACE},
    }


def install_workspace(workspaces_dir: Path, guide: str, notebook: str, browse: str,
                      replace: bool = False):
    """Write the course workspace unless one exists (JupyterLab then keeps the student's
    layout)."""
    from jupyterlab_server.workspaces_handler import (
        WORKSPACE_EXTENSION,
        WorkspacesManager,
        slugify,
    )
    path = Path(workspaces_dir) / (slugify(WORKSPACE) + WORKSPACE_EXTENSION)
    if path.exists() and not replace:
        return None
    return WorkspacesManager(str(workspaces_dir)).save(
        WORKSPACE, json.dumps(workspace(guide, notebook, browse), indent=1))


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def first_notebook(labs: Path, work: Path) -> Path:
    """The student's copy of the course's first practice notebook."""
    return Path(work) / sorted(Path(labs).glob("*.ipynb"))[0].name


# --- make lab ------------------------------------------------------------------------------------

def command(ip: str, port: int, root: Path = ROOT, workspaces_dir=None,
            open_browser: bool = False, allow_root: bool = False) -> list[str]:
    """JupyterLab's command line. It holds no token: every local user can read it in /proc."""
    cmd = [str(Path(sys.executable).with_name("jupyter-lab")),
           f"--ServerApp.ip={ip}", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--ServerApp.open_browser={open_browser}",
           f"--ServerApp.root_dir={root}", *OFFLINE_ARGS]
    if workspaces_dir is not None:
        cmd += [f"--LabApp.workspaces_dir={workspaces_dir}",
                f"--LabApp.default_url=/lab/workspaces/{WORKSPACE}"]
    if allow_root:
        cmd.append("--allow-root")
    return cmd


def lab_env(base=None, token=None) -> dict:
    """The environment to start JupyterLab in: the course's default settings come first, and the
    token, if any, travels here (only the same user and root can read /proc/<pid>/environ)."""
    env = dict(os.environ if base is None else base)
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
        p for p in (str(CONFIG_PATH), env.get("JUPYTER_CONFIG_PATH", "")) if p)
    if token is not None:
        env["JUPYTER_TOKEN"] = token
    return env


def prepare(root: Path = ROOT, labs: Path = LABS, work: Path = WORK, guide: Path = GUIDE):
    """Sync the student's copy and install the course workspace (if missing). Returns the report
    and the workspaces folder (inside the copy, so it is per student and git-ignored)."""
    report = sync_work(labs, work)
    workspaces_dir = Path(work) / ".jupyterlab" / "workspaces"
    first = first_notebook(labs, work)
    install_workspace(workspaces_dir, _rel(guide, root), _rel(first, root), _rel(work, root))
    return report, workspaces_dir


def plan(ip: str = "127.0.0.1", port: int = 0, root: Path = ROOT, workspaces_dir=None,
         open_browser: bool = False, allow_root: bool = False):
    """The URL to open, the command to run and its environment, with a fresh random token."""
    port = port or free_port(ip)
    token = secrets.token_urlsafe(32)
    url = f"http://{ip}:{port}/lab/workspaces/{WORKSPACE}?token={token}"
    cmd = command(ip, port, root, workspaces_dir, open_browser, allow_root)
    return url, cmd, lab_env(token=token)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def refuse_root(allowed: bool) -> None:
    """Kernels run as the server's user: as root, a notebook could change the whole machine."""
    if is_root() and not allowed:
        user = os.environ.get("SUDO_USER") or "<your user>"
        raise LabError("make lab is running as root, so your notebooks would run as root. Run "
                       f"it as your own user: sudo -u {user} make lab. In a throwaway "
                       "container where root is all there is: LSTM_LAB_ALLOW_ROOT=1 make lab")


def _has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def start(args) -> None:
    refuse_root(args.allow_root)
    report, workspaces_dir = prepare()
    for line in report.lines():
        print(f"my-work: {line}")
    if report.problems:
        print("my-work: fix the problems above, then run make lab-update", file=sys.stderr)
    if args.ip not in ("127.0.0.1", "localhost", "::1"):
        print(f"WARNING: binding {args.ip} lets other machines reach this JupyterLab; anyone with "
              "the token can run code as you. Prefer an SSH tunnel to 127.0.0.1.", file=sys.stderr)
    open_browser = _has_display() if args.browser is None else args.browser
    url, cmd, env = plan(args.ip, args.port, ROOT, workspaces_dir, open_browser, args.allow_root)
    print(f"\nOpen this URL in your browser (it holds your private access token):\n  {url}\n"
          f"Your answers are saved in {_rel(WORK, Path.cwd())}/. Stop JupyterLab with Ctrl+C.\n",
          flush=True)
    os.execve(cmd[0], cmd, env)


# --- make lab-update / make lab-reset ------------------------------------------------------------

def update(args) -> None:
    work = Path(args.work)
    report = sync_work(Path(args.labs), work)
    for line in report.lines():
        print(f"{work.name}: {line}")
    if not report.lines():
        print(f"{work.name}: up to date ({len(report.current)} notebooks)")


def reset(args) -> None:
    notebook, backup = reset_notebook(args.notebook, Path(args.labs), Path(args.work))
    if backup:
        print(f"Your previous {notebook.name} is kept as {_rel(backup, Path.cwd())}")
    print(f"{_rel(notebook, Path.cwd())} is a fresh copy of the practice notebook.")


# --- on a JupyterHub: the single-user server's start command -------------------------------------

def _prepare_hub_folder(home: Path, labs: Path) -> list[str]:
    """Sync ~/lstm-course and install the workspace; return the problems instead of raising, so
    that a file in the way never keeps a student from their server."""
    from jupyterlab.commands import get_workspaces_dir
    course, problems = home / HUB_FOLDER, []
    try:
        report = sync_work(labs, course, extra=[GUIDE] if GUIDE.is_file() else [])
        problems += report.problems
        for line in report.lines():
            print(f"[lstm-course] {line}", file=sys.stderr)
        first = first_notebook(labs, course)
        install_workspace(Path(get_workspaces_dir()), f"{HUB_FOLDER}/{GUIDE.name}",
                          _rel(first, home), HUB_FOLDER)
    except (OSError, LabError) as err:
        print(f"[lstm-course] problem  {err}", file=sys.stderr)
        problems.append(str(err))
    return problems


def report_problems(home: Path, problems: list[str]) -> Path | None:
    """Write the problems where the student sees them (~/lstm-course, else ~); clear old ones."""
    text = (f"When your server started on {datetime.now():%Y-%m-%d %H:%M}, the course could not "
            "update everything in lstm-course/. Your server started anyway and nothing of yours "
            "was changed or deleted.\n\n" + "".join(f"- {p}\n" for p in problems) +
            "\nTo fix it: rename or move the file named above (or give yourself permission to "
            "write to the folder), then restart your server: File > Hub Control Panel > Stop My "
            "Server, then Start My Server. If it stays, show this file to your instructor.\n")
    written = None
    for folder in (home / HUB_FOLDER, home):
        path = folder / PROBLEMS
        try:
            if problems and written is None:
                path.write_text(text)
                written = path
            elif os.path.lexists(path) and _is_file(path):
                path.unlink()   # solved since: an old report would only mislead
        except OSError:
            continue
    return written


def hub_user(args, rest) -> None:
    """Prepare ~/lstm-course as the student (so the files are theirs), then become the server."""
    if is_root() and os.environ.get("LSTM_HUB_ALLOW_ROOT") != "1":
        raise LabError("refusing to run a student's server as root: use the class spawner "
                       "(SystemdSpawner) or run the trial hub as a normal user "
                       "(see book/instructor_guide.md)")
    home = Path.home()
    labs = Path(os.environ.get("LSTM_COURSE_LABS") or args.labs)
    report_problems(home, _prepare_hub_folder(home, labs))
    server = shutil.which("jupyterhub-singleuser", path=str(Path(sys.executable).parent)) \
        or shutil.which("jupyterhub-singleuser")
    if server is None:
        raise LabError("jupyterhub-singleuser not found: install jupyterhub in this environment")
    cmd = [server, *OFFLINE_ARGS, *rest]
    if is_root() and "--allow-root" not in cmd:
        cmd.append("--allow-root")   # only a trial hub in a container (LSTM_HUB_ALLOW_ROOT=1)
    sys.stderr.flush()
    os.execve(cmd[0], cmd, lab_env())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python lab/lab.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--ip", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--browser", action=argparse.BooleanOptionalAction, default=None,
                        help="open a browser (default: when this machine has a display)")
    parser.add_argument("--allow-root", action="store_true",
                        default=os.environ.get("LSTM_LAB_ALLOW_ROOT") == "1",
                        help="run as root (a throwaway container only; or LSTM_LAB_ALLOW_ROOT=1)")
    sub = parser.add_subparsers(dest="action")
    folders = argparse.ArgumentParser(add_help=False)
    folders.add_argument("--labs", default=str(LABS), help="practice notebooks (default: labs/)")
    folders.add_argument("--work", default=str(WORK), help="your copy (default: my-work/)")
    sub.add_parser("update", parents=[folders],
                   help="add notebooks new in labs/, refresh untouched ones, keep edited ones")
    reset_parser = sub.add_parser("reset", parents=[folders],
                                  help="replace one notebook by a fresh copy, keeping a backup")
    reset_parser.add_argument("notebook", nargs="?", default="", help="e.g. 02_numpy_lstm")
    sub.add_parser("hub-user", parents=[folders], add_help=False,
                   help="(JupyterHub) prepare ~/lstm-course, then run jupyterhub-singleuser")
    args, rest = parser.parse_known_args(argv)
    try:
        if args.action == "hub-user":
            hub_user(args, rest)
        elif rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        elif args.action == "update":
            update(args)
        elif args.action == "reset":
            reset(args)
        else:
            start(args)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
