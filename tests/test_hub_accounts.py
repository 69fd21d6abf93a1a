"""The class hub's rules, checked without starting a hub: lab/jupyterhub_config.py evaluated as
JupyterHub evaluates it, and lab/hub_admin.py's authenticator run on a database of its own.

Each test pins one hole of issue 17: account names that become system folders, admin names
that approve themselves, sign-up and login abuse (passwords over 72 bytes, lockouts, bcrypt on
the event loop), HTTPS settings, root, and servers that die with the hub. The SystemdSpawner
test runs where jupyterhub-systemdspawner is installed (a class server; not this project's
requirements) and captures the unit that systemd-run would receive.
"""
import asyncio
import os
import re
import subprocess
import sys
import threading
import types
import warnings
from unittest import mock

import bcrypt
import pytest
import yaml

from conftest import ROOT, load_script

with warnings.catch_warnings():   # nativeauthenticator calls a function Python 3.15 removes
    warnings.simplefilter("ignore", DeprecationWarning)
    hub_admin = load_script("lab/hub_admin.py")
CONFIG = ROOT / "lab" / "jupyterhub_config.py"
GUIDE = ROOT / "book" / "instructor_guide.md"
STRONG = "correct-horse-battery-9"


def load_config(state, admins=("instructor",), root=False, **settings):
    """Evaluate lab/jupyterhub_config.py as JupyterHub would, with these environment variables,
    on a state folder where the ``admins`` accounts exist (and as root when ``root``)."""
    from traitlets.config import Config
    for name in admins:
        hub_admin.set_account(hub_admin.db_url(state), name, STRONG)
    config, saved = Config(), dict(os.environ)
    os.environ.update({"LSTM_HUB_STATE": str(state), "LSTM_HUB_TRIAL": "1", **settings})
    try:
        with mock.patch("os.geteuid", return_value=0 if root else 1000):
            exec(compile(CONFIG.read_text(), str(CONFIG), "exec"),
                 {"get_config": lambda: config, "__file__": str(CONFIG), "__name__": "config"})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return config


def authenticator(tmp_path, **settings):
    from jupyterhub import orm
    db = orm.new_session_factory(hub_admin.db_url(tmp_path))()
    options = {"admin_users": {"instructor"}, "enable_signup": True, "allowed_failed_logins": 5,
               "seconds_before_next_try": 600, "minimum_password_length": 10, **settings}
    return hub_admin.CourseAuthenticator(db=db, **options)


def request_from(address):
    return types.SimpleNamespace(request=types.SimpleNamespace(remote_ip=address))


def log_in(auth, name, password, address="10.0.0.1"):
    handler = request_from(address)
    result = asyncio.run(auth.authenticate(handler, {"username": name, "password": password}))
    return result, getattr(handler, "login_problem", None)


# --- 1. account names never become system names --------------------------------------------------

def test_account_names_become_prefixed_unix_names_and_others_are_refused():
    assert hub_admin.system_name("caddy") == "lstm-caddy"
    assert hub_admin.system_name("a") == "lstm-a"
    assert len(hub_admin.system_name("a" * 26)) <= 31   # systemd's limit for a user name
    for bad in ("Caddy", "1st", "a" * 27, "../etc", "a b", "", "-x", "ünï"):
        assert hub_admin.name_problem(bad), bad
        with pytest.raises(ValueError, match="not a valid account name"):
            hub_admin.system_name(bad)


def test_the_hub_accepts_only_names_that_fit(tmp_path):
    pattern = load_config(tmp_path).Authenticator.username_pattern
    assert re.match(pattern, "maria-2") and re.match(pattern, "a")
    for bad in ("dpkg/../x", "Maria", "a" * 27, "9lives"):
        assert not re.match(pattern, bad), bad


def test_class_units_use_prefixed_state_folders(tmp_path):
    """The unit systemd-run would start for an account named caddy: its state folder, user and
    home are lstm-caddy, never /var/lib/caddy (Caddy's TLS keys)."""
    pytest.importorskip("systemdspawner", reason="jupyterhub-systemdspawner is installed only "
                        "on a class server (book/instructor_guide.md)")
    from jupyterhub.objects import Hub
    from systemdspawner import systemd
    config = load_config(tmp_path, LSTM_HUB_TRIAL="", LSTM_HUB_PUBLIC_URL="https://hub.example/")
    spawner_class, sent = config.JupyterHub.spawner_class, {}

    async def start_transient_service(unit, **kwargs):
        sent.update(kwargs, unit=unit)

    async def no(*args, **kwargs):
        return False
    with mock.patch.multiple(systemd, start_transient_service=start_transient_service,
                             service_running=no, service_failed=no,
                             get_systemd_version=lambda: 255):
        for name in ("caddy", "dpkg"):
            user = types.SimpleNamespace(name=name, id=7, url=f"/user/{name}/",
                                         escaped_name=name)
            spawner = spawner_class(config=config, user=user, hub=Hub(), start_timeout=0)
            asyncio.run(spawner.start())
            assert sent["unit"] == f"lstm-{name}"
            assert sent["properties"]["DynamicUser"] == "yes"
            assert sent["properties"]["StateDirectory"] == f"lstm-{name}"
            assert sent["environment_variables"]["HOME"] == f"/var/lib/lstm-{name}"
            assert sent["working_dir"] == f"/var/lib/lstm-{name}"
        bad = types.SimpleNamespace(name="Caddy", id=8, url="/user/Caddy/", escaped_name="Caddy")
        with pytest.raises(ValueError, match="not a valid account name"):
            spawner_class(config=config, user=bad, hub=Hub())


# --- 2. admin names never approve themselves -----------------------------------------------------

def test_the_hub_refuses_to_start_while_an_admin_account_is_missing(tmp_path):
    admins = {"LSTM_HUB_ADMINS": "instructor,ta-maria"}
    with pytest.raises(SystemExit, match=r"make hub-admin NAME=instructor; .*NAME=ta-maria"):
        load_config(tmp_path / "empty", admins=(), **admins)
    assert not (tmp_path / "empty" / "jupyterhub.sqlite").exists()   # the check created nothing
    with pytest.raises(SystemExit, match="Create ta-maria first") as refused:
        load_config(tmp_path, admins=("instructor",), **admins)
    assert "NAME=instructor" not in str(refused.value)
    config = load_config(tmp_path, admins=("instructor", "ta-maria"), **admins)
    assert config.Authenticator.admin_users == {"instructor", "ta-maria"}
    # A class hub names the command with its own state folder.
    with pytest.raises(SystemExit, match=r"hub_admin.py --state \S+ newta"):
        load_config(tmp_path, LSTM_HUB_TRIAL="", LSTM_HUB_PUBLIC_URL="https://hub.example/",
                    LSTM_HUB_ADMINS="instructor,newta")


def test_sign_up_never_approves_anyone_and_refuses_admin_names(tmp_path):
    auth = authenticator(tmp_path, admin_users={"instructor", "ta-maria"})
    # NativeAuthenticator's own entry point approved admin names at once: now refused.
    assert auth.create_user("ta-maria", STRONG) is None
    assert auth.get_user("ta-maria") is None
    problem = asyncio.run(auth.sign_up("ta-maria", STRONG, STRONG))
    assert "reserved for the course's staff" in problem
    assert asyncio.run(auth.sign_up("alice", STRONG, STRONG)) is None
    assert auth.get_user("alice").is_authorized is False
    assert log_in(auth, "alice", STRONG) == (None, "The account 'alice' is waiting for the "
                                                   "instructor's approval.")


# --- 4. sign-up and login abuse ------------------------------------------------------------------

def test_sign_up_is_closed_unless_the_instructor_opens_it(tmp_path):
    assert load_config(tmp_path).NativeAuthenticator.enable_signup is False
    assert load_config(tmp_path, LSTM_HUB_SIGNUP="1").NativeAuthenticator.enable_signup is True
    auth = authenticator(tmp_path, enable_signup=False)
    assert "Sign-up is closed" in asyncio.run(auth.sign_up("alice", STRONG, STRONG))


def test_a_roster_limits_who_may_sign_up(tmp_path):
    roster = tmp_path / "roster.txt"
    roster.write_text("alice\nbob  # second row\n\n")
    config = load_config(tmp_path, LSTM_HUB_SIGNUP="1", LSTM_HUB_ROSTER=str(roster))
    assert config.CourseAuthenticator.roster == {"alice", "bob"}
    auth = authenticator(tmp_path, roster={"alice", "bob"})
    assert "not on the class list" in asyncio.run(auth.sign_up("mallory", STRONG, STRONG))
    assert asyncio.run(auth.sign_up("bob", STRONG, STRONG)) is None
    roster.write_text("alice\nBob Smith\n")
    with pytest.raises(SystemExit, match="not valid account names: Bob Smith"):
        load_config(tmp_path, LSTM_HUB_ROSTER=str(roster))
    with pytest.raises(SystemExit, match="No such file"):
        load_config(tmp_path, LSTM_HUB_ROSTER=str(tmp_path / "missing.txt"))


def test_passwords_over_72_bytes_get_a_clear_error_never_a_crash(tmp_path):
    accented = "é" * 40   # 40 characters, 80 bytes
    for long in ("x" * 73, accented):
        assert "at most 72 bytes" in hub_admin.password_problem(long)
    assert hub_admin.password_problem("ab1-" * 18) is None   # exactly 72 bytes
    auth = authenticator(tmp_path)
    assert "at most 72 bytes" in asyncio.run(auth.sign_up("alice", accented, accented))
    asyncio.run(auth.sign_up("bob", STRONG, STRONG))
    assert log_in(auth, "bob", "y" * 100) == (None, None)   # a wrong password, no exception
    done = subprocess.run([sys.executable, str(ROOT / "lab" / "hub_admin.py"), "instructor",
                           "--password-stdin", "--state", str(tmp_path / "state")],
                          input="z" * 80 + "\n", capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "at most 72 bytes" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_lockout_holds_one_address_for_a_fixed_time(tmp_path):
    auth, now = authenticator(tmp_path), [1000.0]
    auth.clock = lambda: now[0]
    hub_admin.set_account(hub_admin.db_url(tmp_path), "instructor", STRONG)
    for _ in range(5):   # someone guesses from 10.0.0.66
        assert log_in(auth, "instructor", "wrong-guess-1", "10.0.0.66")[0] is None
    result, problem = log_in(auth, "instructor", STRONG, "10.0.0.66")
    assert result is None and "Too many failed logins" in problem and "10 minutes" in problem
    # The instructor, from another address, is not locked out.
    assert log_in(auth, "instructor", STRONG, "10.0.0.1") == ("instructor", None)
    # Guessing on during the lock does not extend it: it ends 10 minutes after it began.
    for minute in range(1, 10):
        now[0] = 1000.0 + 60 * minute
        assert "Too many" in log_in(auth, "instructor", "wrong-guess-2", "10.0.0.66")[1]
    now[0] = 1000.0 + 601
    assert log_in(auth, "instructor", STRONG, "10.0.0.66") == ("instructor", None)


def test_bcrypt_runs_off_the_event_loop(tmp_path):
    auth = authenticator(tmp_path)
    hub_admin.set_account(hub_admin.db_url(tmp_path), "instructor", STRONG)
    threads = []

    def recording(function):
        def wrapper(*args):
            threads.append(threading.current_thread() is threading.main_thread())
            return function(*args)
        return wrapper
    with mock.patch.multiple(bcrypt, checkpw=recording(bcrypt.checkpw),
                             hashpw=recording(bcrypt.hashpw)):
        assert log_in(auth, "instructor", STRONG)[0] == "instructor"
        assert log_in(auth, "instructor", "wrong-guess-1")[0] is None
        assert asyncio.run(auth.sign_up("alice", STRONG, STRONG)) is None
    assert threads and not any(threads), threads   # none ran on the hub's own (main) thread


def test_approval_pages_change_nothing_on_get(tmp_path):
    """Approve and discard answer a GET with a form; only its POST, which carries the XSRF
    token, changes an account (the live hub test posts it)."""
    auth = authenticator(tmp_path)
    routes = dict(auth.get_handlers(None))
    assert routes[r"/authorize/([^/]*)"] is hub_admin.ApproveHandler
    assert routes[r"/discard/([^/]*)"] is hub_admin.DiscardHandler
    assert 'method="post"' in hub_admin.CONFIRM_PAGE and 'name="_xsrf"' in hub_admin.CONFIRM_PAGE
    assert routes[r"/signup"] is hub_admin.SignUpHandler
    assert routes[r"/login"] is hub_admin.LoginHandler


# --- 5. servers outlive a restart of the hub -----------------------------------------------------

def test_servers_are_kept_when_the_hub_stops(tmp_path):
    assert load_config(tmp_path).JupyterHub.cleanup_servers is False


# --- 7. HTTPS ------------------------------------------------------------------------------------

def test_https_settings_are_complete_or_refused(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("certificate")
    with pytest.raises(SystemExit, match="Set both LSTM_HUB_SSL_CERT"):
        load_config(tmp_path, LSTM_HUB_SSL_CERT=str(cert))
    with pytest.raises(SystemExit, match="TLS file not found"):
        load_config(tmp_path, LSTM_HUB_SSL_CERT=str(cert), LSTM_HUB_SSL_KEY=str(key))
    key.write_text("key")
    served = load_config(tmp_path, LSTM_HUB_SSL_CERT=str(cert), LSTM_HUB_SSL_KEY=str(key))
    assert served.JupyterHub.bind_url.startswith("https://") and served.JupyterHub.ssl_key
    with pytest.raises(SystemExit, match="use the https:// address"):
        load_config(tmp_path, LSTM_HUB_PUBLIC_URL="http://hub.example.edu/")
    # A class hub must know its https address, so that every cookie is marked Secure.
    with pytest.raises(SystemExit, match="needs its public address"):
        load_config(tmp_path, LSTM_HUB_TRIAL="")
    public = load_config(tmp_path, LSTM_HUB_PUBLIC_URL="https://hub.example.edu/")
    assert public.JupyterHub.public_url == "https://hub.example.edu/"


def test_proxy_recipes_set_hsts_body_size_and_the_client_address():
    nginx = (ROOT / "lab" / "proxy" / "nginx.conf").read_text()
    caddy = (ROOT / "lab" / "proxy" / "Caddyfile").read_text()
    for recipe in (nginx, caddy):
        assert re.search(r"Strict-Transport-Security\"? \"?max-age=\d{7,}", recipe)
    size = re.search(r"client_max_body_size\s+(\d+)m;", nginx)
    assert size and int(size.group(1)) >= 100   # nginx's default, 1m, refuses bigger notebooks
    # The lockout is per client address: the proxy sets it, a client cannot forge it.
    assert "proxy_set_header X-Real-IP $remote_addr;" in nginx
    assert "header_up X-Real-IP {remote_host}" in caddy
    assert "proxy_set_header Upgrade $http_upgrade;" in nginx   # kernels talk over WebSockets
    guide = GUIDE.read_text()
    assert "../lab/proxy/Caddyfile" in guide and "../lab/proxy/nginx.conf" in guide


# --- 8. root -------------------------------------------------------------------------------------

def test_the_trial_hub_refuses_root_unless_told(tmp_path):
    with pytest.raises(SystemExit, match=r"sudo -u \$SUDO_USER make hub"):
        load_config(tmp_path, root=True)
    config = load_config(tmp_path, root=True, LSTM_HUB_ALLOW_ROOT="1")
    assert config.Spawner.environment["LSTM_HUB_ALLOW_ROOT"] == "1"
    assert "LSTM_HUB_ALLOW_ROOT" not in load_config(tmp_path).Spawner.environment


# --- the configuration as a whole ----------------------------------------------------------------

def test_configuration_is_safe_by_default(tmp_path):
    trial = load_config(tmp_path)
    assert trial.JupyterHub.authenticator_class.__name__ == "CourseAuthenticator"
    assert trial.JupyterHub.bind_url == "http://127.0.0.1:8000"
    assert (trial.JupyterHub.hub_ip == "127.0.0.1"
            and trial.NativeAuthenticator.open_signup is False)
    # The trial spawner isolates nobody, so it refuses to listen beyond this machine.
    with pytest.raises(SystemExit, match="only listens on 127.0.0.1"):
        load_config(tmp_path, LSTM_HUB_IP="0.0.0.0")
    # A class runs every student as their own user with enforced limits (SystemdSpawner).
    try:
        import systemdspawner  # noqa: F401
    except ImportError:
        with pytest.raises(SystemExit, match="pip install jupyterhub-systemdspawner"):
            load_config(tmp_path, LSTM_HUB_TRIAL="", LSTM_HUB_PUBLIC_URL="https://hub.example/")
    else:
        classroom = load_config(tmp_path, LSTM_HUB_TRIAL="",
                                LSTM_HUB_PUBLIC_URL="https://hub.example/")
        assert classroom.SystemdSpawner.dynamic_users is True
        assert classroom.Spawner.mem_limit == "2G"


def test_kubernetes_config_pins_the_chart_and_gives_each_student_storage():
    path = ROOT / "lab" / "k8s" / "config.yaml"
    text = path.read_text()
    values = yaml.safe_load(text)
    chart = re.search(r"--version (\d+\.\d+\.\d+)\b", text)
    assert chart, "config.yaml names the exact chart version in its helm command"
    storage = values["singleuser"]["storage"]
    assert storage["type"] == "dynamic" and re.fullmatch(r"\d+Gi", storage["capacity"])
    # The same rules as on one server.
    auth = values["hub"]["config"]
    assert auth["Authenticator"]["username_pattern"] == f"^{hub_admin.NAME_RULE.pattern}$"
    assert auth["NativeAuthenticator"]["open_signup"] is False
    assert values["singleuser"]["cmd"][-1] == "hub-user"
    assert "hub_admin.py" in text and "CourseAuthenticator" in text
