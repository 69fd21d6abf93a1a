"""JupyterHub for a class taking "LSTMs from scratch": one JupyterLab per student, on one server.

    jupyterhub -f lab/jupyterhub_config.py        # a class (run as root; see the instructor guide)
    make hub                                      # a trial on http://127.0.0.1:8000 (this machine)

What it sets up (book/instructor_guide.md explains each choice):

- Accounts: NativeAuthenticator. Students sign up with their own password at /hub/signup; an
  instructor approves each account at /hub/authorize before it can log in. Nobody shares a
  password, and nothing but the hub itself is needed (no mail or identity server). Passwords are
  stored as bcrypt hashes; common and short passwords are refused; repeated failed logins lock
  the account for a while. Create the instructor's account before opening the hub to the
  network: `make hub-admin` (or `python lab/hub_admin.py NAME`), so nobody can sign up first
  under an admin name.
- Each student's server starts through `python lab/lab.py hub-user`, which runs as the
  student, copies the practice notebooks into ~/lstm-course (new ones added, edited ones never
  touched), and opens the workspace with the lab guide and the first notebook.
- Idle servers are stopped by jupyterhub-idle-culler, a hub-managed service with only the
  permissions it needs (work is saved on disk; the student just starts again).
- Per-student memory and CPU limits: enforced by SystemdSpawner (the class default), which runs
  each student as a separate dynamic Unix user in a systemd unit with MemoryMax and CPUQuota.
  The trial uses SimpleLocalProcessSpawner: every server runs as the hub's own user, with no
  limits and no file isolation; it is for trying the course on 127.0.0.1 only.
- HTTPS: put a TLS-terminating reverse proxy in front (Caddy or nginx, see the guide), or set
  LSTM_HUB_SSL_CERT and LSTM_HUB_SSL_KEY to have the hub serve HTTPS itself.

Settings come from environment variables, so this file needs no edits:

    LSTM_HUB_IP           address to listen on (127.0.0.1; use 0.0.0.0 only with HTTPS in place)
    LSTM_HUB_PORT         public port (8000)
    LSTM_HUB_API_PORT     the hub's internal API port on 127.0.0.1 (8081)
    LSTM_HUB_PROXY_API_PORT  the proxy's control port on 127.0.0.1 (public port + 1)
    LSTM_HUB_STATE        folder for the database, cookie secret, proxy pid (current folder)
    LSTM_HUB_ADMINS       comma-separated instructor accounts (instructor)
    LSTM_HUB_SIGNUP       0 closes the sign-up page once every student has an account (1)
    LSTM_HUB_MEM_LIMIT    memory per student (2G); LSTM_HUB_CPU_LIMIT  CPUs per student (1)
    LSTM_HUB_IDLE_TIMEOUT seconds without activity before a server is stopped (3600)
    LSTM_HUB_SSL_CERT, LSTM_HUB_SSL_KEY   serve HTTPS with this certificate
    LSTM_HUB_TRIAL        1: the single-user trial spawner (make hub sets it)
    LSTM_COURSE_LABS      practice notebooks to copy (the labs/ folder next to this file)
"""
import math
import os
import sys
from pathlib import Path

import nativeauthenticator

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)

COURSE = Path(__file__).resolve().parent.parent
env = os.environ.get
STATE = Path(env("LSTM_HUB_STATE") or os.getcwd()).resolve()
TRIAL = env("LSTM_HUB_TRIAL", "") == "1"
IP, PORT = env("LSTM_HUB_IP", "127.0.0.1"), int(env("LSTM_HUB_PORT", "8000"))
CERT, KEY = env("LSTM_HUB_SSL_CERT"), env("LSTM_HUB_SSL_KEY")

# --- the hub, its proxy and its state ------------------------------------------------------------
c.JupyterHub.bind_url = f"{'https' if CERT else 'http'}://{IP}:{PORT}"
if CERT and KEY:
    c.JupyterHub.ssl_cert, c.JupyterHub.ssl_key = CERT, KEY
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(env("LSTM_HUB_API_PORT", "8081"))
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env('LSTM_HUB_PROXY_API_PORT', PORT + 1)}"
proxy = COURSE / "lab" / "node_modules" / ".bin" / "configurable-http-proxy"
if proxy.exists():   # installed by `make hub-deps` (npm ci in lab/); else the one on PATH
    c.ConfigurableHTTPProxy.command = [str(proxy)]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.cleanup_servers = True          # stopping the hub stops every student's server

# --- accounts: students sign up, an instructor approves ------------------------------------------
c.JupyterHub.authenticator_class = "nativeauthenticator.NativeAuthenticator"
c.JupyterHub.template_paths = [str(Path(nativeauthenticator.__file__).parent / "templates")]
c.Authenticator.admin_users = {a.strip() for a in env("LSTM_HUB_ADMINS", "instructor").split(",")
                               if a.strip()}
# Logging in already requires an approved account, so every approved account may use the hub.
c.Authenticator.allow_all = True
c.Authenticator.username_pattern = r"^[a-z][a-z0-9_-]{1,30}$"   # also a valid Unix user name
c.NativeAuthenticator.open_signup = False    # an instructor approves each account
c.NativeAuthenticator.enable_signup = env("LSTM_HUB_SIGNUP", "1") == "1"   # 0: sign-up closed
c.NativeAuthenticator.minimum_password_length = 10
c.NativeAuthenticator.check_common_password = True
c.NativeAuthenticator.allowed_failed_logins = 5
c.NativeAuthenticator.seconds_before_next_try = 600

# --- each student's server: their own copy of the labs, the course workspace ---------------------
c.Spawner.cmd = [sys.executable, str(COURSE / "lab" / "lab.py"), "hub-user"]
c.Spawner.notebook_dir = "~"                 # home; the copy is ~/lstm-course
c.Spawner.default_url = "/lab/workspaces/lstm-course"
c.Spawner.mem_limit = env("LSTM_HUB_MEM_LIMIT", "2G")
c.Spawner.cpu_limit = float(env("LSTM_HUB_CPU_LIMIT", "1"))
threads = str(max(1, math.ceil(c.Spawner.cpu_limit)))   # as many threads as CPUs granted
c.Spawner.environment = {
    "LSTM_COURSE_LABS": env("LSTM_COURSE_LABS") or str(COURSE / "labs"),
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # PyTorch, NumPy and TensorFlow otherwise start one thread per core of the whole machine,
    # and thirty students' threads fighting over the cores slow everyone down.
    "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
    "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": "1",
}
c.Spawner.start_timeout = 120                # a busy small server can take a while
c.Spawner.http_timeout = 90

if TRIAL:
    # Trial only: servers run as the hub's user in STATE/users/<name>. No isolation, no limits,
    # so never reachable from another machine.
    if IP not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"LSTM_HUB_TRIAL=1 runs every student as the same user: it only listens on "
                 f"127.0.0.1, not {IP}. For a class, leave LSTM_HUB_TRIAL unset.")
    c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
    c.SimpleLocalProcessSpawner.home_dir_template = str(STATE / "users" / "{username}")
else:
    # A class: one systemd unit per student, as a dynamic Unix user whose home is
    # /var/lib/<name>; MemoryMax and CPUQuota enforce the limits above. Needs root and systemd,
    # and `pip install jupyterhub-systemdspawner==1.0.2` in this environment.
    try:
        import systemdspawner  # noqa: F401
    except ImportError:
        sys.exit("A class hub runs each student with SystemdSpawner: "
                 f"{sys.executable} -m pip install jupyterhub-systemdspawner==1.0.2 "
                 "(or LSTM_HUB_TRIAL=1 for a trial on 127.0.0.1; see book/instructor_guide.md)")
    c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"
    c.SystemdSpawner.dynamic_users = True
    c.SystemdSpawner.isolate_tmp = True
    c.SystemdSpawner.isolate_devices = True
    c.SystemdSpawner.disable_user_sudo = True
    c.SystemdSpawner.unit_name_template = "jupyter-{USERNAME}"

# --- idle culling: a hub-managed service with just the scopes it needs ---------------------------
idle = int(env("LSTM_HUB_IDLE_TIMEOUT", "3600"))
c.JupyterHub.services = [{
    "name": "idle-culler",
    "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                f"--timeout={idle}", f"--cull-every={max(5, min(300, idle // 4))}"],
}]
c.JupyterHub.load_roles = [{
    "name": "idle-culler",
    "description": "Stop servers that have been idle too long",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}]
