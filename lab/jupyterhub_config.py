"""JupyterHub for a class taking "LSTMs from scratch": one JupyterLab per student, on one server.

    jupyterhub -f lab/jupyterhub_config.py        # a class (run as root; see the instructor guide)
    make hub                                      # a trial on http://127.0.0.1:8090 (this machine)

What it sets up (book/instructor_guide.md explains each choice):

- Accounts: lab/hub_admin.py's CourseAuthenticator, NativeAuthenticator with the course's rules.
  Students sign up with their own password at /hub/signup while the instructor has sign-up open;
  an instructor approves each account at /hub/authorize before it can log in. Admin accounts
  (LSTM_HUB_ADMINS) are created with `python lab/hub_admin.py NAME` (`make hub-admin` for the
  trial), never through sign-up: the hub refuses to start while one is missing.
- Account names are `[a-z][a-z0-9_-]{0,25}`; a student runs as the Unix user lstm-<name> with
  the state folder /var/lib/lstm-<name>, so no account can take over a system folder.
- Each student's server starts through `python lab/lab.py hub-user`, which runs as the
  student, copies the practice notebooks into ~/lstm-course (new ones added, edited ones never
  touched, a file it cannot copy reported in the folder), and opens the course workspace.
- Servers survive a restart of the hub (students lose no kernel when the instructor restarts it
  to change a setting); idle servers are stopped by jupyterhub-idle-culler, a hub service with
  only the permissions it needs.
- Per-student memory and CPU limits: enforced by SystemdSpawner (the class default). The trial
  uses SimpleLocalProcessSpawner: every server runs as the hub's own user, with no limits and no
  file isolation; it listens on 127.0.0.1 only and refuses to run as root.
- HTTPS: a TLS-terminating reverse proxy in front (lab/proxy/), with LSTM_HUB_PUBLIC_URL set so
  that cookies are marked Secure; or LSTM_HUB_SSL_CERT and LSTM_HUB_SSL_KEY for the hub itself.

Settings come from environment variables, so this file needs no edits:

    LSTM_HUB_PUBLIC_URL   the address students open, https://... (required for a class)
    LSTM_HUB_IP           address to listen on (127.0.0.1; use 0.0.0.0 only with HTTPS in place)
    LSTM_HUB_PORT         public port (8000)
    LSTM_HUB_API_PORT     the hub's internal API port on 127.0.0.1 (8081)
    LSTM_HUB_PROXY_API_PORT  the proxy's control port on 127.0.0.1 (public port + 1)
    LSTM_HUB_STATE        folder for the database, cookie secret, proxy pid (current folder)
    LSTM_HUB_ADMINS       comma-separated admin accounts: instructors, assistants (instructor)
    LSTM_HUB_SIGNUP       1 opens the sign-up page, while students create accounts (0: closed)
    LSTM_HUB_ROSTER       a file of the names that may sign up, one a line (any valid name)
    LSTM_HUB_MEM_LIMIT    memory per student (2G); LSTM_HUB_CPU_LIMIT  CPUs per student (1)
    LSTM_HUB_IDLE_TIMEOUT seconds without activity before a server is stopped (3600)
    LSTM_HUB_SSL_CERT, LSTM_HUB_SSL_KEY   serve HTTPS with this certificate and its key
    LSTM_HUB_TRIAL        1: the single-user trial spawner (make hub sets it)
    LSTM_HUB_ALLOW_ROOT   1: let a trial run as root (a throwaway container only)
    LSTM_COURSE_LABS      practice notebooks to copy (the labs/ folder next to this file)
"""
import math
import os
import sys
from pathlib import Path

import nativeauthenticator

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)

COURSE = Path(__file__).resolve().parent.parent
if str(COURSE / "lab") not in sys.path:   # hub_admin: the account rules, shared with its command
    sys.path.insert(0, str(COURSE / "lab"))
import hub_admin  # noqa: E402

env = os.environ.get
STATE = Path(env("LSTM_HUB_STATE") or os.getcwd()).resolve()
TRIAL = env("LSTM_HUB_TRIAL", "") == "1"
IP, PORT = env("LSTM_HUB_IP", "127.0.0.1"), int(env("LSTM_HUB_PORT", "8000"))
CERT, KEY = env("LSTM_HUB_SSL_CERT"), env("LSTM_HUB_SSL_KEY")
PUBLIC_URL = env("LSTM_HUB_PUBLIC_URL", "")
ADMINS = {a.strip() for a in env("LSTM_HUB_ADMINS", "instructor").split(",") if a.strip()}
ALLOW_ROOT = env("LSTM_HUB_ALLOW_ROOT", "") == "1"
ADMIN_COMMAND = ("make hub-admin NAME={name}" if TRIAL else
                 f"{sys.executable} {COURSE / 'lab' / 'hub_admin.py'} --state {STATE} {{name}}")


def read_roster(path: str) -> set:
    """The names that may sign up, one a line (# starts a comment)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        sys.exit(f"LSTM_HUB_ROSTER={path}: {err.strerror}. Give a file of names, one a line.")
    names = {line.split("#")[0].strip() for line in lines} - {""}
    wrong = sorted(n for n in names if hub_admin.name_problem(n))
    if wrong:
        sys.exit(f"LSTM_HUB_ROSTER={path}: not valid account names: {', '.join(wrong)} "
                 f"({hub_admin.name_problem(wrong[0])})")
    return names


# --- refuse settings that would look fine and be unsafe ------------------------------------------
if bool(CERT) != bool(KEY):
    sys.exit("Set both LSTM_HUB_SSL_CERT (the certificate) and LSTM_HUB_SSL_KEY (its private "
             "key), or neither: with only one the hub would announce https and serve no TLS.")
for tls_file in filter(None, (CERT, KEY)):
    if not Path(tls_file).is_file():
        sys.exit(f"TLS file not found: {tls_file} (LSTM_HUB_SSL_CERT / LSTM_HUB_SSL_KEY)")
if PUBLIC_URL and not PUBLIC_URL.startswith("https://"):
    sys.exit(f"LSTM_HUB_PUBLIC_URL={PUBLIC_URL}: use the https:// address students open; "
             "passwords must never cross the network unencrypted.")
if not TRIAL and not PUBLIC_URL:
    sys.exit("A class hub needs its public address, e.g. LSTM_HUB_PUBLIC_URL=https://hub.example"
             ".edu/ (the hub then marks its cookies Secure behind the HTTPS proxy; see "
             "book/instructor_guide.md). For a trial on this machine: make hub.")
if TRIAL and IP not in ("127.0.0.1", "localhost", "::1"):
    sys.exit(f"LSTM_HUB_TRIAL=1 runs every student as the same user: it only listens on "
             f"127.0.0.1, not {IP}. For a class, leave LSTM_HUB_TRIAL unset.")
if TRIAL and hasattr(os, "geteuid") and os.geteuid() == 0 and not ALLOW_ROOT:
    sys.exit("The trial hub runs every student's code as the hub's own user, here root. Run it "
             "as your own user (e.g. sudo -u $SUDO_USER make hub); in a throwaway container "
             "where root is all there is, set LSTM_HUB_ALLOW_ROOT=1.")
missing = hub_admin.missing_accounts(STATE, ADMINS)
if missing:
    sys.exit("The hub will not start while an admin account is missing (anyone could sign up "
             f"under that name). Create {', '.join(missing)} first, with: "
             + "; ".join(ADMIN_COMMAND.format(name=name) for name in missing))

# --- the hub, its proxy and its state ------------------------------------------------------------
c.JupyterHub.bind_url = f"{'https' if CERT else 'http'}://{IP}:{PORT}"
if CERT:
    c.JupyterHub.ssl_cert, c.JupyterHub.ssl_key = CERT, KEY
if PUBLIC_URL:
    c.JupyterHub.public_url = PUBLIC_URL   # https: every cookie gets the Secure flag
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(env("LSTM_HUB_API_PORT", "8081"))
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env('LSTM_HUB_PROXY_API_PORT', PORT + 1)}"
proxy = COURSE / "lab" / "node_modules" / ".bin" / "configurable-http-proxy"
if proxy.exists():   # installed by `make hub-deps` (npm ci in lab/); else the one on PATH
    c.ConfigurableHTTPProxy.command = [str(proxy)]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")
c.JupyterHub.db_url = hub_admin.db_url(STATE)
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
# Restarting the hub (to change a setting, or after an update) leaves students' servers and
# kernels running; the restarted hub finds them again. The idle culler still stops idle ones.
c.JupyterHub.cleanup_servers = False

# --- accounts: students sign up while sign-up is open, an instructor approves --------------------
c.JupyterHub.authenticator_class = hub_admin.CourseAuthenticator
c.JupyterHub.template_paths = [str(Path(nativeauthenticator.__file__).parent / "templates")]
c.Authenticator.admin_users = ADMINS
# Logging in already requires an approved account, so every approved account may use the hub.
c.Authenticator.allow_all = True
c.Authenticator.username_pattern = f"^{hub_admin.NAME_RULE.pattern}$"
c.NativeAuthenticator.open_signup = False    # an instructor approves each account
c.NativeAuthenticator.enable_signup = env("LSTM_HUB_SIGNUP", "0") == "1"
c.NativeAuthenticator.minimum_password_length = hub_admin.MIN_LENGTH
c.NativeAuthenticator.check_common_password = True
c.NativeAuthenticator.allowed_failed_logins = 5
c.NativeAuthenticator.seconds_before_next_try = 600
if env("LSTM_HUB_ROSTER"):
    c.CourseAuthenticator.roster = read_roster(env("LSTM_HUB_ROSTER"))

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
    # so never reachable from another machine (checked above).
    c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
    c.SimpleLocalProcessSpawner.home_dir_template = str(STATE / "users" / "{username}")
    if ALLOW_ROOT:   # lab.py hub-user then passes --allow-root to the server, and only then
        c.Spawner.environment["LSTM_HUB_ALLOW_ROOT"] = "1"
else:
    # A class: one systemd unit per student, as a dynamic Unix user lstm-<name> whose home is
    # /var/lib/lstm-<name>; MemoryMax and CPUQuota enforce the limits above. Needs root and
    # systemd, and `pip install jupyterhub-systemdspawner==1.0.2` in this environment.
    try:
        from systemdspawner import SystemdSpawner
    except ImportError:
        sys.exit("A class hub runs each student with SystemdSpawner: "
                 f"{sys.executable} -m pip install jupyterhub-systemdspawner==1.0.2 "
                 "(or LSTM_HUB_TRIAL=1 for a trial on 127.0.0.1; see book/instructor_guide.md)")

    class CourseSystemdSpawner(SystemdSpawner):
        """SystemdSpawner with lstm-<name> wherever it would put <name>: its unit, dynamic
        user, StateDirectory= and home. systemd hands an existing /var/lib/<name> to the new
        user, so a student called caddy or dpkg would otherwise own that service's files."""

        def _expand_user_vars(self, string):
            return string.format(USERNAME=hub_admin.system_name(self.user.name),
                                 USERID=self.user.id)

    c.JupyterHub.spawner_class = CourseSystemdSpawner
    c.SystemdSpawner.dynamic_users = True
    c.SystemdSpawner.isolate_tmp = True
    c.SystemdSpawner.isolate_devices = True
    c.SystemdSpawner.disable_user_sudo = True
    c.SystemdSpawner.unit_name_template = "{USERNAME}"   # the unit, and so the user: lstm-<name>

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
