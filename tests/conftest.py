"""Shared test set-up: quick mode everywhere, paths, the tools outside the package, a browser,
and stopping a server with everything it started."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

# make test sets these; running pytest by hand gets the same quick, text-only run.
os.environ.setdefault("LSTMBOOK_QUICK", "1")
os.environ.setdefault("LSTMBOOK_PROGRESS", "text")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def load_script(relative: str):
    """Import a tool that lives outside the lstmbook package (tools/sync.py, lab/lab.py) by path,
    as ``make`` runs it, so the package never has to import it."""
    path = ROOT / relative
    name = "_tool_" + path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def stop(proc, timeout: float = 20):
    """Terminate a server and everything it started (kernels, a hub's single-user servers in
    sessions of their own), then kill any survivor. The list is taken first, while the server
    still knows its children."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    _, alive = psutil.wait_procs(family, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Debian Chromium (never a downloaded build) with a fresh profile."""
    if not os.path.exists(CHROMIUM):
        pytest.fail("The browser tests need Debian's chromium: sudo apt-get install chromium "
                    "(make test installs it when run as root)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM,
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 900})
        context.set_default_timeout(60_000)
        try:
            yield context
        finally:
            context.close()
