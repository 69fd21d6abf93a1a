"""The class hub of lab/jupyterhub_config.py, run on loopback as `make hub` runs it (trial
spawner).

Two students sign up through NativeAuthenticator's real pages with their own random passwords,
the instructor (created with lab/hub_admin.py) approves them, each gets a server in their own
copy of the labs and runs a check cell through the kernel API, and neither can reach the other's
server. Re-syncing after a course update keeps an edited notebook byte for byte (the new version
lands beside it), a restarted hub finds a running server and kernel again, and a hub with a
4-second idle timeout shows the culler stopping an idle server. The hub's start-up
time and each server's memory are written to _build/hub-measurements.json.
"""
import csv
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
import requests
import websocket

from conftest import ROOT, load_script, stop

lab = load_script("lab/lab.py")

CONFIG = ROOT / "lab" / "jupyterhub_config.py"
PROXY = ROOT / "lab" / "node_modules" / ".bin" / "configurable-http-proxy"
MEASUREMENTS = ROOT / "_build" / "hub-measurements.json"
STUDENTS = ("alice", "bob")
CHECK = ("from lstmbook.checks import intro as check\n"
         "from lstmbook.lessons.intro import unigram_log_probs\n"
         "check.unigram_log_probs(unigram_log_probs)\n"
         "import os; print('cwd', os.getcwd())\n")
measured = {}


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_for(condition, timeout, what, interval=0.5):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


class Hub:
    def __init__(self, base, state, labs, proc, log):
        self.base, self.state, self.labs, self.proc, self.log = base, state, labs, proc, log

    def url(self, path):
        return f"{self.base}{path}"

    def logs(self):
        return self.log.read_text(errors="replace")[-4000:]


def hub_settings(state, **settings):
    """The environment `make hub` gives the hub (on free ports, with a copy of labs/ that a test
    can "update"), after creating the instructor's account with lab/hub_admin.py."""
    if not PROXY.exists():
        pytest.fail("The hub tests need JupyterHub's proxy: run `make hub-deps` "
                    "(npm ci in lab/; make test does it)")
    labs = state / "course-labs"
    shutil.copytree(lab.LABS, labs)
    port, api_port, proxy_port = free_ports(3)
    env = {**os.environ, "LSTM_HUB_TRIAL": "1", "LSTM_HUB_STATE": str(state),
           "LSTM_HUB_IP": "127.0.0.1", "LSTM_HUB_PORT": str(port),
           "LSTM_HUB_API_PORT": str(api_port), "LSTM_HUB_PROXY_API_PORT": str(proxy_port),
           "LSTM_HUB_ADMINS": "instructor", "LSTM_HUB_SIGNUP": "1",
           "LSTM_COURSE_LABS": str(labs), **settings}
    if os.geteuid() == 0:   # this test machine is a throwaway container where root is all
        env["LSTM_HUB_ALLOW_ROOT"] = "1"
    password = secrets.token_urlsafe(18)
    subprocess.run([sys.executable, str(ROOT / "lab" / "hub_admin.py"), "instructor",
                    "--password-stdin"], input=password + "\n", text=True, env=env, cwd=state,
                   check=True, timeout=60, capture_output=True)
    return env, password


@contextmanager
def launched(state, env, password):
    """Run the hub as `make hub` does until the block ends."""
    log = state / "jupyterhub.log"
    jupyterhub = Path(sys.executable).with_name("jupyterhub")
    started = time.monotonic()
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(jupyterhub), "-f", str(CONFIG)], cwd=state, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    hub = Hub(f"http://127.0.0.1:{env['LSTM_HUB_PORT']}", state,
              Path(env["LSTM_COURSE_LABS"]), proc, log)
    hub.admin_password = password
    try:
        def up():
            if proc.poll() is not None:
                pytest.fail(f"the hub exited with {proc.returncode}:\n{hub.logs()}")
            try:
                return requests.get(hub.url("/hub/api"), timeout=2).status_code == 200
            except requests.RequestException:
                return False
        wait_for(up, 90, "the hub to answer on /hub/api")
        hub.startup_s = round(time.monotonic() - started, 2)
        yield hub
    finally:
        stop(proc, timeout=60)


@contextmanager
def running_hub(state, **settings):
    """Create the instructor account with lab/hub_admin.py, then run the hub as `make hub` does."""
    env, password = hub_settings(state, **settings)
    with launched(state, env, password) as hub:
        yield hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    try:
        with running_hub(tmp_path_factory.mktemp("hub")) as hub:
            measured["hub_startup_s"] = hub.startup_s
            yield hub
    finally:
        MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
        MEASUREMENTS.write_text(json.dumps(measured, indent=1) + "\n")


# --- the hub's web pages, as a browser would use them --------------------------------------------

def post_form(session, url, data):
    page = session.get(url, timeout=15)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    assert page.status_code == 200 and xsrf, (url, page.status_code)
    return session.post(url, data={**data, "_xsrf": xsrf.group(1)}, timeout=30,
                        allow_redirects=False)


def sign_up(hub, name, password):
    return post_form(requests.Session(), hub.url("/hub/signup"), {
        "username": name, "signup_password": password, "signup_password_confirmation": password})


def log_in(hub, name, password):
    session = requests.Session()
    response = post_form(session, hub.url("/hub/login"), {"username": name, "password": password})
    return session, response


def api_token(hub, session, name):
    """A token for the logged-in user (as the hub's token page makes one)."""
    response = session.post(hub.url(f"/hub/api/users/{name}/tokens"),
                            json={"note": "test", "expires_in": 1800}, timeout=15,
                            headers={"X-XSRFToken": session.cookies.get("_xsrf", path="/hub/")})
    assert response.status_code == 201, response.text
    return response.json()["token"]


def api(hub, token, method, path, **kwargs):
    return requests.request(method, hub.url(path), timeout=30,
                            headers={"Authorization": f"token {token}"}, **kwargs)


def start_server(hub, name, token):
    response = api(hub, token, "POST", f"/hub/api/users/{name}/server")
    assert response.status_code in (201, 202), response.text

    def ready():
        server = api(hub, token, "GET", f"/hub/api/users/{name}").json()["servers"].get("", {})
        return server.get("ready")
    wait_for(ready, 150, f"{name}'s server to be ready")


def stop_server(hub, name, token):
    response = api(hub, token, "DELETE", f"/hub/api/users/{name}/server")
    assert response.status_code in (202, 204), response.text
    wait_for(lambda: not api(hub, token, "GET", f"/hub/api/users/{name}").json()["servers"],
             60, f"{name}'s server to stop")


# --- the kernel API ------------------------------------------------------------------------------

def start_kernel(hub, name, token, path="lstm-course/00_intro.ipynb"):
    response = api(hub, token, "POST", f"/user/{name}/api/sessions", json={
        "path": path, "type": "notebook", "name": "", "kernel": {"name": "python3"}})
    assert response.status_code == 201, response.text
    return response.json()["kernel"]["id"]


def execute(hub, name, token, kernel, code, timeout=120):
    """Run ``code`` in a kernel over its websocket; return (stdout text, error or None)."""
    ws = websocket.create_connection(
        f"{hub.base.replace('http', 'ws', 1)}/user/{name}/api/kernels/{kernel}/channels",
        header=[f"Authorization: token {token}"], timeout=timeout, suppress_origin=True)
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": name,
                   "session": uuid.uuid4().hex, "version": "5.3",
                   "date": datetime.now(UTC).isoformat()},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
    text, error = [], None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.settimeout(max(1, deadline - time.monotonic()))
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                text.append(content["text"])
            elif kind == "execute_result":
                text.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                error = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(text), error
    finally:
        ws.close()
    pytest.fail(f"the cell did not finish within {timeout} s in {name}'s kernel")


def user_processes(hub, name):
    found = []
    for p in psutil.Process(hub.proc.pid).children(recursive=True):
        try:
            if p.environ().get("JUPYTERHUB_USER") == name:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def memory_mb(hub, name):
    rss = pss = 0
    processes = user_processes(hub, name)
    for p in processes:
        info = p.memory_full_info()
        rss, pss = rss + info.rss, pss + info.pss
    return {"processes": len(processes), "rss_mb": round(rss / 2**20, 1),
            "pss_mb": round(pss / 2**20, 1)}


# --- the class -----------------------------------------------------------------------------------

def admin_login(hub):
    session, response = log_in(hub, "instructor", hub.admin_password)
    assert response.status_code == 302, response.text
    return session, api_token(hub, session, "instructor")


@pytest.fixture(scope="module")
def admin(hub):
    return admin_login(hub)


@pytest.fixture(scope="module")
def students(hub, admin):
    """Both students sign up, wait for approval, log in, and start their servers."""
    admin_session, admin_token = admin
    people = {}
    for name in STUDENTS:
        password = secrets.token_urlsafe(16)
        response = sign_up(hub, name, password)
        assert "sent to the admin" in response.text, response.text
        _, refused = log_in(hub, name, password)
        assert refused.status_code == 200 and "waiting for the instructor" in refused.text
        # The instructor approves the account on /hub/authorize: following the link only asks
        # (a forged link or image approves nothing), the form's POST with its XSRF token does.
        asked = admin_session.get(hub.url(f"/hub/authorize/{name}"), timeout=15)
        assert asked.status_code == 200 and f"Approve {name}?" in asked.text, asked.text
        assert "waiting for the instructor" in log_in(hub, name, password)[1].text
        forged = admin_session.post(hub.url(f"/hub/authorize/{name}"), timeout=15,
                                    allow_redirects=False)
        assert forged.status_code == 403, forged.status_code
        approved = post_form(admin_session, hub.url(f"/hub/authorize/{name}"), {})
        assert approved.status_code == 302, approved.status_code
        session, response = log_in(hub, name, password)
        assert response.status_code == 302, response.text
        people[name] = {"session": session, "token": api_token(hub, session, name)}
    started = time.monotonic()
    for name in STUDENTS:   # start both, then wait for both: they start in parallel
        response = api(hub, people[name]["token"], "POST", f"/hub/api/users/{name}/server")
        assert response.status_code in (201, 202), response.text
    for name in STUDENTS:
        token = people[name]["token"]
        wait_for(lambda token=token, name=name: api(hub, token, "GET", f"/hub/api/users/{name}")
                 .json()["servers"].get("", {}).get("ready"), 150, f"{name}'s server to be ready")
    measured["two_servers_ready_s"] = round(time.monotonic() - started, 2)
    return people


def test_accounts_need_a_strong_password_and_a_free_name(hub):
    assert "sent to the admin" not in sign_up(hub, "carol", "password").text
    _, response = log_in(hub, "instructor", "not-the-password")
    assert response.status_code == 200 and "Invalid username or password" in response.text
    # Staff names are never signed up (an admin name would approve itself).
    assert "reserved for the course" in sign_up(hub, "instructor", secrets.token_urlsafe(16)).text
    # Passwords bcrypt cannot take get a reason, not an error 500.
    response = sign_up(hub, "dave", "é" * 40)
    assert response.status_code == 200 and "at most 72 bytes" in response.text
    _, response = log_in(hub, "instructor", "x" * 100)
    assert response.status_code == 200 and "Invalid username or password" in response.text


def test_each_student_has_a_server_in_their_own_copy_of_the_labs(hub, students):
    for name in STUDENTS:
        token = students[name]["token"]
        measured.setdefault("server_mb", {})[name] = memory_mb(hub, name)
        listing = api(hub, token, "GET", f"/user/{name}/api/contents/lstm-course")
        assert listing.status_code == 200, listing.text
        names = {item["name"] for item in listing.json()["content"]}
        assert {p.name for p in hub.labs.glob("*.ipynb")} | {"lab_guide.md"} <= names
        assert (hub.state / "users" / name / "lstm-course" / "00_intro.ipynb").is_file()
        # The server opens the course workspace: lab guide and first practice notebook.
        space = api(hub, token, "GET", f"/user/{name}/lab/api/workspaces/lstm-course").json()
        paths = {v["data"]["path"] for k, v in space["data"].items() if ":" in k and "data" in v}
        assert {"lstm-course/lab_guide.md", "lstm-course/00_intro.ipynb"} <= paths


def test_each_student_runs_a_check_cell(hub, students):
    for name in STUDENTS:
        token = students[name]["token"]
        kernel = start_kernel(hub, name, token)
        out, error = execute(hub, name, token, kernel, "1 + 1")
        assert error is None and "2" in out
        measured.setdefault("server_and_idle_kernel_mb", {})[name] = memory_mb(hub, name)
        out, error = execute(hub, name, token, kernel, CHECK)
        assert error is None and "Exercise 0.1 passed" in out, (out, error)
        cwd = out.split("cwd ")[-1].strip()
        assert Path(cwd) == hub.state / "users" / name / "lstm-course"
        measured.setdefault("after_check_cell_mb", {})[name] = memory_mb(hub, name)


def test_students_cannot_reach_each_other(hub, students):
    alice, bob = students["alice"], students["bob"]
    for path in ("/user/alice/api/contents/lstm-course", "/user/alice/api/kernels",
                 "/user/alice/api/status"):
        assert api(hub, bob["token"], "GET", path).status_code in (403, 404), path
    assert api(hub, bob["token"], "POST", "/user/alice/api/kernels").status_code in (403, 404)
    assert api(hub, bob["token"], "GET", "/hub/api/users/alice").status_code in (403, 404)
    assert api(hub, bob["token"], "DELETE",
               "/hub/api/users/alice/server").status_code in (403, 404)
    # Nor with the browser session: bob's cookies do not open alice's JupyterLab.
    response = bob["session"].get(hub.url("/user/alice/api/contents/lstm-course"), timeout=30)
    assert response.status_code in (403, 404) or "00_intro.ipynb" not in response.text
    assert api(hub, alice["token"], "GET", "/user/alice/api/status").status_code == 200


def test_idle_culler_runs_as_a_hub_service(hub, admin):
    _, token = admin
    services = api(hub, token, "GET", "/hub/api/services").json()
    assert "idle-culler" in services
    culler = [p for p in psutil.Process(hub.proc.pid).children(recursive=True)
              if "jupyterhub_idle_culler" in " ".join(p.cmdline())]
    assert len(culler) == 1 and culler[0].is_running()
    # Only the permissions it needs: it may stop servers, not change users or run code.
    role = api(hub, token, "GET", "/hub/api/services/idle-culler").json()["roles"]
    assert role == ["idle-culler"]


def test_a_hub_restart_keeps_servers_and_kernels(tmp_path):
    """The instructor restarts the hub (here to set its public https address): the student's
    server and kernel run on, and the restarted hub marks its login cookie Secure."""
    env, password = hub_settings(tmp_path)
    with launched(tmp_path, env, password) as hub:
        _, token = admin_login(hub)
        start_server(hub, "instructor", token)
        kernel = start_kernel(hub, "instructor", token)
        assert execute(hub, "instructor", token, kernel, "answer = 6 * 7")[1] is None
        servers = user_processes(hub, "instructor")
        hub.proc.terminate()   # the hub alone, as `systemctl restart jupyterhub` stops it
        hub.proc.wait(timeout=60)
    try:
        assert servers and all(p.is_running() for p in servers)
        public = {**env, "LSTM_HUB_PUBLIC_URL": "https://hub.example.edu/"}
        with launched(tmp_path, public, password) as hub:
            wait_for(lambda: api(hub, token, "GET", "/hub/api/users/instructor").json()
                     ["servers"].get("", {}).get("ready"), 60, "the server to be found again")
            out, error = execute(hub, "instructor", token, kernel, "print(answer)")
            assert error is None and out.strip() == "42", (out, error)
            # Behind the HTTPS proxy the hub sees http; its public https URL makes the cookie
            # Secure. (requests keeps Secure cookies off http, so the form is posted by hand.)
            page = requests.get(hub.url("/hub/login"), timeout=15)
            xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
            response = requests.post(hub.url("/hub/login"), timeout=30, allow_redirects=False,
                                     cookies={"_xsrf": page.cookies.get("_xsrf")},
                                     data={"username": "instructor", "password": password,
                                           "_xsrf": xsrf})
            login = [c for c in response.raw.headers.getlist("Set-Cookie")
                     if c.startswith("jupyterhub-hub-login=")]
            assert response.status_code == 302 and login and "Secure" in login[0], login
            stop_server(hub, "instructor", token)
    finally:
        for p in servers:   # no longer children of a hub the test stops
            if p.is_running():
                p.kill()


def test_idle_servers_are_stopped(tmp_path):
    """A hub whose culler stops servers idle for 4 s: a server nobody uses goes away."""
    with running_hub(tmp_path, LSTM_HUB_IDLE_TIMEOUT="4") as hub:
        _, token = admin_login(hub)
        response = api(hub, token, "POST", "/hub/api/users/instructor/server")
        assert response.status_code in (201, 202), response.text
        # The server may be culled before a poll sees it ready: watch the log and the API.
        wait_for(lambda: "Culling server instructor" in hub.log.read_text()
                 and not api(hub, token, "GET", "/hub/api/users/instructor").json()["servers"],
                 90, "the idle culler to stop the idle server", interval=1)


def test_course_update_keeps_an_edited_notebook_byte_for_byte(hub, students):
    name, token = "alice", students["alice"]["token"]
    path = "/user/alice/api/contents/lstm-course/00_intro.ipynb"
    # Alice answers the exercise and saves, through JupyterLab's contents API.
    model = api(hub, token, "GET", path, params={"content": 1}).json()
    cell = next(c for c in model["content"]["cells"] if "raise NotImplementedError" in c["source"])
    cell["source"] = ("def unigram_log_probs(train_ids, vocab_size):\n"
                      "    counts = np.bincount(train_ids, minlength=vocab_size) + 1.0\n"
                      "    return np.log(counts / counts.sum())\n")
    saved = api(hub, token, "PUT", path, json={"type": "notebook", "format": "json",
                                               "content": model["content"]})
    assert saved.status_code == 200, saved.text
    copy = hub.state / "users" / name / "lstm-course" / "00_intro.ipynb"
    edited = copy.read_bytes()
    # The instructor updates the course (git pull + make sync): a lesson changes, one is new.
    lesson = hub.labs / "00_intro.ipynb"
    lesson.write_bytes(lesson.read_bytes().replace(b"Exercise 0.1", b"Exercise 0.1 (revised)"))
    shutil.copy2(lesson, hub.labs / "99_new_lesson.ipynb")
    # Alice's server restarts (as after idle culling); the copy step runs again.
    stop_server(hub, name, token)
    start_server(hub, name, token)
    assert copy.read_bytes() == edited
    listing = api(hub, token, "GET", "/user/alice/api/contents/lstm-course").json()
    assert "99_new_lesson.ipynb" in {item["name"] for item in listing["content"]}
    assert (copy.parent / "99_new_lesson.ipynb").read_bytes() == lesson.read_bytes()
    # The revised lesson lands next to her copy, named so she sees it in the file browser.
    beside = list(copy.parent.glob("00_intro-update-*.ipynb"))
    assert len(beside) == 1 and beside[0].read_bytes() == lesson.read_bytes()


def test_grading_re_runs_the_notebooks_and_a_forged_pass_scores_nothing(tmp_path):
    """`make grade` on the trial hub's layout (STATE/users/<name>/lstm-course): lab/grade.py
    re-executes each notebook with the course's checks, so alice's saved "Exercise 0.1 passed"
    scores nothing and bob's answer scores. Who runs the kernels, the limits and the copy are
    tested in tests/test_grade.py; here the kernels run as the test's own user."""
    grade = load_script("lab/grade.py")
    users, out = tmp_path / "hub" / "users", tmp_path / "grades"
    for name in STUDENTS:
        (users / name / "lstm-course").mkdir(parents=True)
    nb = json.loads((lab.LABS / "00_intro.ipynb").read_text())
    exercise = next(c for c in nb["cells"] if c["metadata"].get("exercise") == "0.1")
    check = next(c for c in nb["cells"] if "check.unigram_log_probs(" in "".join(c["source"]))
    check["outputs"] = [{"output_type": "stream", "name": "stdout",
                         "text": ["Exercise 0.1 passed\n"]}]
    (users / "alice" / "lstm-course" / "00_intro.ipynb").write_text(json.dumps(nb))
    check["outputs"] = []
    exercise["source"] = ("import numpy as np\n\n\ndef unigram_log_probs(train_ids, vocab_size):\n"
                          "    counts = np.bincount(train_ids, minlength=vocab_size) + 1.0\n"
                          "    return np.log(counts / counts.sum())\n")
    (users / "bob" / "lstm-course" / "00_intro.ipynb").write_text(json.dumps(nb))
    grade.grade(users, out, grade.Settings(seconds=120), lessons=["0"], log=lambda line: None)
    rows = {r["student"]: r for r in csv.DictReader(open(out / "gradebook.csv"))}
    assert (rows["alice"]["0.1"], rows["bob"]["0.1"]) == ("0", "1")
    assert "not done" in (out / "feedback" / "alice.txt").read_text()
