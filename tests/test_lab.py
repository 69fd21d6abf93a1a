"""make lab: JupyterLab on 127.0.0.1 only, with a random token; student copies never overwritten."""
import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request

import psutil
import pytest

from lstmbook import lab
from conftest import ROOT


def get(url, token=None):
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    port, token = lab.free_port(), secrets.token_urlsafe(32)
    proc = subprocess.Popen(lab.command("127.0.0.1", port, token, root=root),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            get(f"{base}/api")
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start within 60 s")
    yield base, token, proc
    proc.terminate()
    proc.wait(timeout=20)


def test_api_refuses_requests_without_the_token(server):
    base, token, _ = server
    assert get(f"{base}/api/status")[0] == 403
    assert get(f"{base}/api/status", token="wrong-" + token)[0] == 403


def test_api_accepts_the_token(server):
    base, token, _ = server
    status, body = get(f"{base}/api/status", token=token)
    assert status == 200 and "started" in json.loads(body)


def test_listens_on_loopback_only(server):
    _, _, proc = server
    listening = [
        c.laddr.ip for c in psutil.Process(proc.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN]
    assert listening and set(listening) == {"127.0.0.1"}, listening


def test_each_start_gets_a_new_random_token_on_loopback():
    (url1, cmd1), (url2, _) = lab.plan(), lab.plan()
    token1, token2 = url1.split("token=")[1], url2.split("token=")[1]
    assert token1 != token2 and len(token1) >= 40
    assert url1.startswith("http://127.0.0.1:")
    assert f"--IdentityProvider.token={token1}" in cmd1 and "--ServerApp.ip=127.0.0.1" in cmd1


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
