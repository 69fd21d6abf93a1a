"""The class hub of lab/jupyterhub_config.py, run on loopback as `make hub` runs it (trial
spawner).

Two students sign up through NativeAuthenticator's real pages with their own random passwords,
the instructor (created with lab/hub_admin.py) approves them, each gets a server in their own
copy of the labs and runs a check cell through the kernel API, and neither can reach the other's
server. Re-syncing after a course update keeps an edited notebook byte for byte, and a second
hub with a 4-second idle timeout shows the culler stopping an idle server. The hub's start-up
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


@contextmanager
def running_hub(state, **settings):
    """Create the instructor account with lab/hub_admin.py, then run the hub as `make hub` does."""
    if not PROXY.exists():
        pytest.fail("The hub tests need JupyterHub's proxy: run `make hub-deps` "
                    "(npm ci in lab/; make test does it)")
    labs = state / "course-labs"          # a copy of labs/ that the test can "update"
    shutil.copytree(lab.LABS, labs)
    port, api_port, proxy_port = free_ports(3)
    env = {**os.environ, "LSTM_HUB_TRIAL": "1", "LSTM_HUB_STATE": str(state),
           "LSTM_HUB_IP": "127.0.0.1", "LSTM_HUB_PORT": str(port),
           "LSTM_HUB_API_PORT": str(api_port), "LSTM_HUB_PROXY_API_PORT": str(proxy_port),
           "LSTM_HUB_ADMINS": "instructor", "LSTM_COURSE_LABS": str(labs), **settings}
    password = secrets.token_urlsafe(18)
    subprocess.run([sys.executable, str(ROOT / "lab" / "hub_admin.py"), "instructor",
                    "--password-stdin"], input=password + "\n", text=True, env=env, cwd=state,
                   check=True, timeout=60, capture_output=True)
    log = state / "jupyterhub.log"
    jupyterhub = Path(sys.executable).with_name("jupyterhub")
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(jupyterhub), "-f", str(CONFIG)], cwd=state, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    hub = Hub(f"http://127.0.0.1:{port}", state, labs, proc, log)
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
        assert refused.status_code == 200 and "has not been authorized" in refused.text
        # The instructor approves the account on /hub/authorize.
        approved = admin_session.get(hub.url(f"/hub/authorize/{name}"), timeout=15)
        assert approved.status_code == 200, approved.status_code
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
    assert "sent to the admin" not in sign_up(hub, "instructor", secrets.token_urlsafe(16)).text
    _, response = log_in(hub, "instructor", "not-the-password")
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


def test_collecting_work_reads_saved_outputs_and_runs_nothing(tmp_path):
    homes, out = tmp_path / "homes", tmp_path / "submissions"
    for name in STUDENTS:
        (homes / name / "lstm-course").mkdir(parents=True)
    nb = json.loads((lab.LABS / "00_intro.ipynb").read_text())
    check = next(c for c in nb["cells"] if "check.unigram_log_probs(" in "".join(c["source"]))
    check["outputs"] = [{"output_type": "stream", "name": "stdout",
                         "text": ["Exercise 0.1 passed\n"]}]
    (homes / "alice" / "lstm-course" / "00_intro.ipynb").write_text(json.dumps(nb))
    shutil.copy2(lab.LABS / "00_intro.ipynb", homes / "bob" / "lstm-course")
    done = subprocess.run([sys.executable, str(ROOT / "lab" / "collect.py"), str(homes),
                           "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = {r["student"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert rows["alice"]["exercises_passed"] == "0.1" and "0.1" in rows["bob"]["not_yet"]
    copied = (out / "bob" / "00_intro.ipynb").read_bytes()
    assert copied == (lab.LABS / "00_intro.ipynb").read_bytes()


def load_config(**settings):
    """Evaluate lab/jupyterhub_config.py as JupyterHub would, with these environment variables."""
    from traitlets.config import Config
    config, saved = Config(), dict(os.environ)
    os.environ.update(settings)
    try:
        exec(compile(CONFIG.read_text(), str(CONFIG), "exec"),
             {"get_config": lambda: config, "__file__": str(CONFIG), "__name__": "config"})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return config


# nativeauthenticator calls a function that Python 3.15 removes; not ours to fix.
@pytest.mark.filterwarnings("ignore:'locale.getdefaultlocale':DeprecationWarning")
def test_configuration_is_safe_by_default():
    trial = load_config(LSTM_HUB_TRIAL="1")
    assert trial.JupyterHub.authenticator_class == "nativeauthenticator.NativeAuthenticator"
    assert trial.JupyterHub.bind_url == "http://127.0.0.1:8000"
    assert (trial.JupyterHub.hub_ip == "127.0.0.1"
            and trial.NativeAuthenticator.open_signup is False)
    # The trial spawner isolates nobody, so it refuses to listen beyond this machine.
    with pytest.raises(SystemExit, match="only listens on 127.0.0.1"):
        load_config(LSTM_HUB_TRIAL="1", LSTM_HUB_IP="0.0.0.0")
    # A class runs every student as their own user with enforced limits (SystemdSpawner).
    try:
        import systemdspawner  # noqa: F401
    except ImportError:
        with pytest.raises(SystemExit, match="pip install jupyterhub-systemdspawner"):
            load_config(LSTM_HUB_TRIAL="")
    else:
        classroom = load_config(LSTM_HUB_TRIAL="")
        assert classroom.JupyterHub.spawner_class == "systemdspawner.SystemdSpawner"
        assert classroom.SystemdSpawner.dynamic_users is True
        assert classroom.Spawner.mem_limit == "2G"
