"""``make lab``: JupyterLab on the student's own copy of the practice notebooks.

Safe by default: bound to 127.0.0.1 on a free port, with a random token printed once. Your
answers live in ``my-work/`` (git-ignored), copied from ``labs/`` the first time and never
overwritten: notebooks new in ``labs/`` are added, edited ones are left alone.
"""
from pathlib import Path
import argparse
import os
import secrets
import shutil
import socket
import sys

ROOT = Path(__file__).resolve().parent.parent
LABS, WORK = ROOT / "labs", ROOT / "my-work"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def add_new_notebooks(labs: Path = LABS, work: Path = WORK) -> list[Path]:
    """Copy the practice notebooks that ``work`` lacks; never touch one that exists."""
    work.mkdir(exist_ok=True)
    added = []
    for nb in sorted(labs.glob("*.ipynb")):
        target = work / nb.name
        if not target.exists():
            shutil.copy2(nb, target)
            added.append(target)
    return added


def command(ip: str, port: int, token: str, root: Path = ROOT) -> list[str]:
    cmd = [str(Path(sys.executable).with_name("jupyter-lab")),
           f"--ServerApp.ip={ip}", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", "--ServerApp.open_browser=False",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ip", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    args = parser.parse_args(argv)
    for path in add_new_notebooks():
        print(f"added {path.relative_to(ROOT)}")
    url, cmd = plan(args.ip, args.port)
    print(f"\nOpen this URL in your browser (it holds your private access token):\n  {url}\n",
          flush=True)
    os.execv(cmd[0], cmd)


def plan(ip: str = "127.0.0.1", port: int = 0):
    """The URL to open and the command to run, with a fresh random token each time."""
    port = port or free_port(ip)
    token = secrets.token_urlsafe(32)
    first = sorted(WORK.glob("*.ipynb"))
    page = f"lab/tree/my-work/{first[0].name}" if first else "lab"
    return f"http://{ip}:{port}/{page}?token={token}", command(ip, port, token)


if __name__ == "__main__":
    main()
