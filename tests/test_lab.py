"""make lab: JupyterLab on 127.0.0.1 only, with a random token; student copies never overwritten.

The server is started exactly as ``make lab`` starts it (``lab.prepare`` + ``lab.plan``), but on a
temporary root holding its own ``my-work/``, so the tests never touch a student's real copy.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import psutil
import pytest

from conftest import ROOT, SCREENSHOTS, load_script, stop

lab = load_script("lab/lab.py")

def get(url, token=None, method="GET", timeout=10):
    request = urllib.request.Request(url, method=method)
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    (root / "book").mkdir()
    shutil.copy2(lab.GUIDE, root / "book" / lab.GUIDE.name)
    shutil.copy2(lab.ROOT / "book" / "00_intro.md", root / "book")  # a lesson's MyST source
    work = root / "my-work"
    _, workspaces = lab.prepare(root=root, work=work, guide=root / "book" / lab.GUIDE.name)
    # As root (this test machine is a throwaway container) only with the explicit opt-in.
    url, cmd, env = lab.plan(root=root, workspaces_dir=workspaces, allow_root=lab.is_root())
    token = url.split("token=")[1]
    base = url.split("/lab/")[0]
    log = open(root / "jupyterlab.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            get(f"{base}/api", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        stop(proc)
        log.close()
        pytest.fail("JupyterLab did not start within 90 s:\n"
                    + (root / "jupyterlab.log").read_text()[-3000:])
    try:
        yield {"url": url, "base": base, "token": token, "proc": proc, "root": root, "work": work}
    finally:
        stop(proc)
        log.close()


def test_api_refuses_requests_without_the_token(server):
    base, token = server["base"], server["token"]
    assert get(f"{base}/api/status")[0] == 403
    assert get(f"{base}/api/status", token="wrong-" + token)[0] == 403
    assert get(f"{base}/api/contents/my-work")[0] == 403
    assert get(f"{base}/api/kernels", method="POST")[0] == 403


def test_api_accepts_the_token(server):
    base, token = server["base"], server["token"]
    status, body = get(f"{base}/api/status", token=token)
    assert status == 200 and "started" in json.loads(body)
    status, body = get(f"{base}/api/contents/my-work", token=token)
    assert status == 200
    assert "00_intro.ipynb" in [item["name"] for item in json.loads(body)["content"]]


def listening_addresses(pid):
    found = []
    for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            found += [c.laddr.ip for c in p.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            pass
    return found


def other_addresses():
    """Every address of this machine except loopback (link-local IPv6 with its scope)."""
    found = []
    for name, addresses in psutil.net_if_addrs().items():
        for a in addresses:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                found.append((socket.AF_INET, (a.address, 0)))
            elif a.family == socket.AF_INET6 and a.address.split("%")[0] != "::1":
                address = a.address.split("%")[0]
                scope = socket.if_nametoindex(name) if address.startswith("fe80") else 0
                found.append((socket.AF_INET6, (address, 0, 0, scope)))
    return found


def test_listens_on_loopback_only(server):
    base, token, proc = server["base"], server["token"], server["proc"]
    port = urlparse(base).port
    # A kernel too: its ZeroMQ ports must also be on loopback only.
    status, body = get(f"{base}/api/kernels", token=token, method="POST")
    assert status == 201, status
    kernel = json.loads(body)["id"]
    try:
        # The kernel binds its five ZeroMQ ports once it has started.
        deadline = time.monotonic() + 60
        while len(listening_addresses(proc.pid)) < 6 and time.monotonic() < deadline:
            time.sleep(0.5)
        listening = listening_addresses(proc.pid)
        assert len(listening) >= 6 and set(listening) == {"127.0.0.1"}, listening
    finally:
        get(f"{base}/api/kernels/{kernel}", token=token, method="DELETE")
    # Nothing answers on the machine's other addresses (nor on ::1 or 127.0.0.2).
    targets = other_addresses() + [(socket.AF_INET6, ("::1", 0, 0, 0)),
                                   (socket.AF_INET, ("127.0.0.2", 0))]
    for family, address in targets:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            assert s.connect_ex((address[0], port, *address[2:])) != 0, address


def test_each_start_gets_a_new_random_token_on_loopback():
    (url1, cmd1, env1), (url2, _, _) = lab.plan(), lab.plan()
    token1, token2 = url1.split("token=")[1], url2.split("token=")[1]
    assert token1 != token2 and len(token1) >= 40
    assert url1.startswith("http://127.0.0.1:") and "/lab/workspaces/lstm-course?" in url1
    assert env1["JUPYTER_TOKEN"] == token1 and "--ServerApp.ip=127.0.0.1" in cmd1
    assert not any(token1 in arg for arg in cmd1) and "--allow-root" not in cmd1


def test_the_token_is_not_on_any_command_line(server):
    """Every local user can read /proc/<pid>/cmdline (a shared SSH server has many)."""
    family = [psutil.Process(server["proc"].pid)]
    family += family[0].children(recursive=True)
    for p in family:
        cmdline = Path(f"/proc/{p.pid}/cmdline").read_bytes()
        assert cmdline and server["token"].encode() not in cmdline, p.cmdline()
    assert get(f"{server['base']}/api/status", token=server["token"])[0] == 200


def test_make_lab_refuses_root_unless_told(monkeypatch, capsys):
    monkeypatch.setattr(lab.os, "geteuid", lambda: 0)
    monkeypatch.setenv("SUDO_USER", "maria")
    monkeypatch.delenv("LSTM_LAB_ALLOW_ROOT", raising=False)
    monkeypatch.setattr(lab, "prepare", lambda: pytest.fail("synced my-work/ as root"))
    with pytest.raises(SystemExit) as stopped:
        lab.main([])
    assert stopped.value.code == 2
    assert "sudo -u maria make lab" in capsys.readouterr().err
    assert "--allow-root" not in lab.plan()[1]
    assert "--allow-root" in lab.plan(allow_root=True)[1]
    # A hub's single-user server as root: only in a trial that asked for it.
    monkeypatch.delenv("LSTM_HUB_ALLOW_ROOT", raising=False)
    with pytest.raises(lab.LabError, match="refusing to run a student's server as root"):
        lab.hub_user(argparse.Namespace(labs=str(lab.LABS)), [])


def test_workspace_shows_the_guide_and_the_first_practice_notebook(server):
    status, body = get(f"{server['base']}/lab/api/workspaces/lstm-course", token=server["token"])
    assert status == 200
    data = json.loads(body)["data"]
    opened = {v["data"]["path"]: v["data"]["factory"] for k, v in data.items()
              if k.startswith(("notebook:", "markdownviewer-widget:"))}
    assert opened == {"book/lab_guide.md": "Markdown Preview",
                      "my-work/00_intro.ipynb": "Notebook"}


def test_student_runs_the_first_cells_in_the_browser(server, browser):
    page = browser.new_page()
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(server["url"])
    # The workspace opens the lab guide (rendered by jupyterlab-myst) beside the practice notebook.
    notebook = page.locator(".jp-NotebookPanel").first
    notebook.wait_for()
    tabs = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tabLabel")
    page.wait_for_function(
        "() => document.querySelectorAll('.lm-DockPanel-tabBar li').length >= 2")
    assert {"lab_guide.md", "00_intro.ipynb"} <= set(tabs.all_inner_texts())
    # jupyterlab-myst renders the guide's MyST (its admonitions are not plain Markdown).
    page.locator(".jp-MarkdownViewer .jp-RenderedMySTMarkdown .myst-admonition").first.wait_for()
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=90_000)
    # Run the cells from the top with Shift+Enter: title, imports, text, the corpus summary.
    notebook.locator(".jp-Cell").first.click()
    for _ in range(4):
        page.keyboard.press("Shift+Enter")
    first_code = notebook.locator(".jp-CodeCell").first
    first_code.locator(".jp-InputPrompt", has_text="[1]:").wait_for(timeout=90_000)
    output = notebook.locator(".jp-CodeCell").nth(1).locator(".jp-OutputArea-output")
    output.filter(has_text="1,115,394 characters").wait_for(timeout=90_000)
    assert "65 symbols" in output.first.inner_text()
    # No pop-up asks about a news feed (lab/jupyter-config turns it off).
    assert page.get_by_text("official Jupyter news").count() == 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "lab_workspace.png"))
    # Everything the page loaded came from this JupyterLab.
    outside = [u for u in requests if urlparse(u).scheme in ("http", "https", "ws", "wss")
               and urlparse(u).hostname != "127.0.0.1"]
    assert not outside, outside
    page.close()


def test_a_lessons_source_opens_as_a_notebook(server, browser):
    """The book's launch button opens book/NN_name.md: jupytext shows it as a notebook, with
    its code cells, not as Markdown text."""
    page = browser.new_page()
    page.goto(f"{server['base']}/lab/workspaces/launch/tree/book/00_intro.md?reset"
              f"&token={server['token']}")
    panel = page.locator(".jp-NotebookPanel")
    panel.wait_for()
    panel.locator(".jp-CodeCell").nth(2).wait_for()  # cells render progressively: wait for three
    assert page.locator(".jp-FileEditor").count() == 0
    page.close()


# --- the student's copy: never overwritten -------------------------------------------------------

def test_student_copies_are_never_overwritten(tmp_path):
    labs, work = tmp_path / "labs", tmp_path / "my-work"
    labs.mkdir()
    (labs / "01_a.ipynb").write_text("original")
    assert [p.name for p in lab.add_new_notebooks(labs, work)] == ["01_a.ipynb"]
    (work / "01_a.ipynb").write_text("my answers")
    (labs / "01_a.ipynb").write_text("updated lesson")
    (labs / "02_b.ipynb").write_text("new lesson")
    assert [p.name for p in lab.add_new_notebooks(labs, work)] == ["02_b.ipynb"]
    assert (work / "01_a.ipynb").read_text() == "my answers"


def test_resync_keeps_an_edited_notebook_byte_for_byte_and_refreshes_untouched_ones(tmp_path):
    labs, work = tmp_path / "labs", tmp_path / "my-work"
    labs.mkdir()
    first = "00_intro.ipynb"
    shutil.copy2(lab.LABS / first, labs / first)
    (labs / "99_spare.ipynb").write_bytes((labs / first).read_bytes())
    assert {p.name for p in lab.sync_work(labs, work).added} == {first, "99_spare.ipynb"}
    # The student answers an exercise in the first notebook (as JupyterLab would save it).
    nb = json.loads((work / first).read_text())
    cell = next(c for c in nb["cells"] if "raise NotImplementedError" in "".join(c["source"]))
    cell["source"] = "def unigram_log_probs(train_ids, vocab_size):\n    return 'my answer'\n"
    edited = (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode()
    (work / first).write_bytes(edited)
    # The course is updated: both notebooks change, a new one appears; `make sync`, `git pull`.
    for name in (first, "99_spare.ipynb"):
        (labs / name).write_bytes(
            (labs / name).read_bytes().replace(b"Exercise", b"Exercise (v2)"))
    (labs / "98_new.ipynb").write_bytes((labs / first).read_bytes())
    report = lab.sync_work(labs, work)
    assert (work / first).read_bytes() == edited
    assert [p.name for p in report.kept] == [first]
    assert [p.name for p in report.added] == ["98_new.ipynb"]
    assert [p.name for p in report.updated] == ["99_spare.ipynb"]
    assert (work / "99_spare.ipynb").read_bytes() == (labs / "99_spare.ipynb").read_bytes()
    # The new version lands next to the edited copy, under a name that says what it is.
    (mine, beside), = report.beside
    assert mine.name == first and beside.name.startswith("00_intro-update-")
    assert beside.read_bytes() == (labs / first).read_bytes()
    assert any(beside.name in line and "your 00_intro.ipynb is unchanged" in line
               for line in report.lines())
    # Syncing again changes nothing, and the edited copy still never counts as untouched.
    again = lab.sync_work(labs, work)
    assert not (again.added or again.updated or again.beside)
    assert [p.name for p in again.kept] == [first] and (work / first).read_bytes() == edited
    # A third version replaces the second one's copy, which she never opened.
    (labs / first).write_bytes((labs / first).read_bytes().replace(b"(v2)", b"(v3)"))
    lab.sync_work(labs, work)
    copies = list(work.glob("00_intro-update-*.ipynb"))
    assert len(copies) == 1 and copies[0].read_bytes() == (labs / first).read_bytes()
    assert (work / first).read_bytes() == edited


def test_copies_made_before_records_were_kept_count_as_edited(tmp_path):
    labs, work = tmp_path / "labs", tmp_path / "my-work"
    labs.mkdir()
    work.mkdir()
    (labs / "01_a.ipynb").write_text("lesson v2")
    (work / "01_a.ipynb").write_text("lesson v1 with my answers")   # no .lstm-course-sync.json
    report = lab.sync_work(labs, work)
    assert [p.name for p in report.kept] == ["01_a.ipynb"]
    assert (work / "01_a.ipynb").read_text() == "lesson v1 with my answers"


def run_lab(*args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "lab" / "lab.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_update_and_reset_commands(tmp_path):
    labs, work = tmp_path / "labs", tmp_path / "my-work"
    labs.mkdir()
    (labs / "02_numpy_lstm.ipynb").write_text("lesson")
    folders = ["--labs", str(labs), "--work", str(work)]
    out = run_lab("update", *folders, cwd=tmp_path)
    assert out.returncode == 0 and "added    02_numpy_lstm.ipynb" in out.stdout, out
    (work / "02_numpy_lstm.ipynb").write_text("my answers")
    out = run_lab("reset", *folders, "02_numpy_lstm", cwd=tmp_path)
    assert out.returncode == 0, out
    assert (work / "02_numpy_lstm.ipynb").read_text() == "lesson"
    backups = list((work / "backups").glob("02_numpy_lstm-*.ipynb"))
    assert len(backups) == 1 and backups[0].read_text() == "my answers"
    assert "backups/02_numpy_lstm-" in out.stdout
    # A fresh copy is untouched again, so the next update may refresh it.
    (labs / "02_numpy_lstm.ipynb").write_text("lesson v2")
    out = run_lab("update", *folders, cwd=tmp_path)
    assert "updated  02_numpy_lstm.ipynb" in out.stdout
    # Mistakes get a message that says how to fix them.
    out = run_lab("reset", *folders, "02_numpy", cwd=tmp_path)
    assert out.returncode == 2 and "Choose one of: 02_numpy_lstm" in out.stderr
    out = run_lab("reset", *folders, cwd=tmp_path)
    assert out.returncode == 2 and "make lab-reset NB=" in out.stderr


def test_a_file_in_the_way_never_stops_a_students_server(tmp_path, monkeypatch):
    """On the hub, a folder or a link named like a notebook, or a folder the student made
    read-only, is reported in their folder; the other notebooks are copied and the server
    starts."""
    labs, home = tmp_path / "labs", tmp_path / "home"
    labs.mkdir()
    for name in ("00_a.ipynb", "01_b.ipynb", "02_c.ipynb", "03_d.ipynb"):
        (labs / name).write_text(name)
    course = home / lab.HUB_FOLDER
    (course / "00_a.ipynb").mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere", course / "01_b.ipynb")
    copy = lab._copy

    def read_only(src, dst):   # chmod does not stop root, who runs these tests: simulate it
        if dst.name == "02_c.ipynb":
            raise PermissionError(13, "Permission denied", str(dst))
        copy(src, dst)
    started = []

    def execve(path, cmd, env):
        started.append(cmd)
        raise SystemExit(0)
    for key, value in {"HOME": home, "LSTM_COURSE_LABS": labs, "LSTM_HUB_ALLOW_ROOT": "1",
                       "JUPYTERLAB_WORKSPACES_DIR": tmp_path / "workspaces"}.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.setattr(lab, "_copy", read_only)
    monkeypatch.setattr(lab.os, "execve", execve)
    with pytest.raises(SystemExit):
        lab.hub_user(argparse.Namespace(labs=str(labs)), [])
    assert started and started[0][0].endswith("jupyterhub-singleuser")
    assert (course / "03_d.ipynb").read_text() == "03_d.ipynb"
    report = (course / lab.PROBLEMS).read_text()
    for name in ("00_a.ipynb", "01_b.ipynb", "02_c.ipynb"):
        assert name in report, report
    assert "Permission denied" in report and "Stop My Server" in report
    # The student renames the folder and removes the link: the next start clears the report.
    (course / "00_a.ipynb").rename(course / "00_a-mine")
    (course / "01_b.ipynb").unlink()
    monkeypatch.setattr(lab, "_copy", copy)
    with pytest.raises(SystemExit):
        lab.hub_user(argparse.Namespace(labs=str(labs)), [])
    assert len(started) == 2 and not (course / lab.PROBLEMS).exists()
    assert (course / "00_a.ipynb").read_text() == "00_a.ipynb"
