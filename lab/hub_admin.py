"""Accounts on the class hub: the rules every account follows, the authenticator that applies
them on the hub's pages, and the command that creates approved accounts from a terminal.

    python lab/hub_admin.py instructor              # asks for the password twice
    make hub-admin NAME=instructor                  # the same, for the `make hub` trial
    make hub-admin NAME=ta-maria                    # a teaching assistant: the same helper
    python lab/hub_admin.py --if-missing instructor # only when the account does not exist yet

Every admin name (LSTM_HUB_ADMINS: instructors, teaching assistants) gets its account here,
never through the sign-up page: NativeAuthenticator approves anyone who signs up under an admin
name, so the course's authenticator refuses admin names on that page, and the hub refuses to
start while an admin account is missing. This command writes to the hub's database in
LSTM_HUB_STATE (default: the current folder), creating it if the hub has not run yet; the hub
may be running.
"""
import argparse
import asyncio
import getpass
import math
import os
import re
import sys
import time
from functools import cache
from pathlib import Path

import bcrypt
import nativeauthenticator
from jupyterhub import orm
from nativeauthenticator import handlers
from nativeauthenticator.nativeauthenticator import NativeAuthenticator
from nativeauthenticator.orm import UserInfo  # registers its table with the hub's database
from tornado import web
from traitlets import Integer, Set, Unicode

# A hub name becomes the Unix user and state folder lstm-<name>: 5 + 26 characters stay within
# the 31 that systemd allows for a user name.
NAME_RULE = re.compile(r"[a-z][a-z0-9_-]{0,25}")
SYSTEM_PREFIX = "lstm-"
MIN_LENGTH = 10   # characters
MAX_BYTES = 72    # bcrypt reads no further, and bcrypt 5 raises on longer passwords
TOO_LONG = (f"Use a password of at most {MAX_BYTES} bytes (an accented letter counts 2): the "
            "hub stores passwords with bcrypt, which reads no further.")


# --- the rules -----------------------------------------------------------------------------------

def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an account name, or None."""
    if NAME_RULE.fullmatch(name):
        return None
    return (f"{name!r} is not a valid account name: use a lowercase letter, then at most 25 "
            "lowercase letters, digits, - or _ (for example maria or j-smith2)")


def system_name(name: str) -> str:
    """The Unix user, systemd unit and state folder of a student: never a system's own name."""
    problem = name_problem(name)
    if problem:
        raise ValueError(problem)
    return SYSTEM_PREFIX + name


@cache
def common_passwords() -> frozenset:
    listing = Path(nativeauthenticator.__file__).parent / "common-credentials.txt"
    return frozenset(listing.read_text().splitlines())


def password_problem(password: str, min_length: int = MIN_LENGTH) -> str | None:
    """Why ``password`` cannot be used, or None."""
    if len(password) < min_length:
        return f"Use a password of at least {min_length} characters."
    if too_long(password):
        return TOO_LONG
    if password in common_passwords():
        return "That password is on the list of common passwords: choose another."
    return None


def too_long(*passwords: str) -> bool:
    return any(len(p.encode()) > MAX_BYTES for p in passwords)


# --- the database --------------------------------------------------------------------------------

def db_url(state) -> str:
    return f"sqlite:///{Path(state) / 'jupyterhub.sqlite'}"


def _session(url: str):
    return orm.new_session_factory(url)()


def has_account(url: str, name: str) -> bool:
    session = _session(url)
    try:
        return UserInfo.find(session, name) is not None
    finally:
        session.close()


def missing_accounts(state, names) -> list[str]:
    """The names among ``names`` without an approved account in the hub's database."""
    if not (Path(state) / "jupyterhub.sqlite").is_file():
        return sorted(names)   # no database yet: every account is missing (and none is created)
    session = _session(db_url(state))
    try:
        return sorted(n for n in names
                      if not getattr(UserInfo.find(session, n), "is_authorized", False))
    finally:
        session.close()


def set_account(url: str, name: str, password: str) -> bool:
    """Store ``name`` with a bcrypt hash of ``password``, approved. True if the account is new."""
    problem = name_problem(name) or password_problem(password)
    if problem:
        raise ValueError(problem)
    session = _session(url)
    try:
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
        info = UserInfo.find(session, name)
        if info is None:
            session.add(UserInfo(username=name, password=hashed, is_authorized=True))
        else:
            info.password, info.is_authorized = hashed, True
        session.commit()
        return info is None
    finally:
        session.close()


# --- the authenticator ---------------------------------------------------------------------------

class CourseAuthenticator(NativeAuthenticator):
    """NativeAuthenticator (students sign up, an instructor approves) with the course's rules.

    - Sign-up refuses admin names (their accounts come from this file's command), names off the
      class list when there is one, and passwords the rules above refuse, each with its reason.
      It never approves anyone by itself.
    - bcrypt runs in worker threads, at most ``bcrypt_threads`` at a time: a flood of logins
      queues up instead of freezing the hub (each check takes about 0.3 s of CPU).
    - Failed logins lock a name for one client address only, for a fixed time that further
      attempts do not extend: someone guessing from elsewhere cannot lock the instructor out.
    - Approving or discarding a sign-up takes a POST with the page's XSRF token, so a link or an
      image in someone's page cannot approve an account with the instructor's cookies.
    """

    roster = Set(Unicode(), help="Names that may sign up; empty: any valid name.").tag(config=True)
    bcrypt_threads = Integer(2, help="Password checks running at once.").tag(config=True)

    clock = staticmethod(time.monotonic)   # tests replace it

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._failures = {}   # (name, address) -> (count, time of the last failure)
        self._locked = {}     # (name, address) -> time the lock ends
        self._slots = None

    async def _bcrypt(self, function, *args):
        """Run a bcrypt function in a worker thread, a few at a time."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.bcrypt_threads)
        async with self._slots:
            return await asyncio.to_thread(function, *args)

    # --- passwords and sign-up ---

    def is_password_strong(self, password):
        return password_problem(password, self.minimum_password_length) is None

    def signup_problem(self, name: str, password: str, confirmation: str) -> str | None:
        """Why this sign-up is refused, in words for the person signing up, or None."""
        if not self.enable_signup:
            return "Sign-up is closed. Ask your instructor."
        if name_problem(name):
            return name_problem(name)
        if name in self.admin_users:
            return (f"{name!r} is reserved for the course's staff, whose accounts the instructor "
                    "creates. Choose another name.")
        if self.roster and name not in self.roster:
            return f"{name!r} is not on the class list: use the name your instructor gave you."
        if self.user_exists(name):
            return f"The name {name!r} is taken. Choose another."
        if password != confirmation:
            return "The two passwords differ. Type the same password twice."
        return password_problem(password, self.minimum_password_length)

    def _add_signup(self, name: str, hashed: bytes):
        info = UserInfo(username=name, password=hashed, is_authorized=False)
        self.db.add(info)
        self.db.commit()
        return info

    def create_user(self, username, password, **kwargs):
        """NativeAuthenticator's own entry point, under the same rules (never pre-approved)."""
        name = self.normalize_username(username)
        if self.signup_problem(name, password, password):
            return None
        return self._add_signup(name, bcrypt.hashpw(password.encode(), bcrypt.gensalt()))

    async def sign_up(self, name: str, password: str, confirmation: str) -> str | None:
        """Record a sign-up for approval; return why it was refused, or None."""
        problem = self.signup_problem(name, password, confirmation)
        if problem:
            return problem
        hashed = await self._bcrypt(bcrypt.hashpw, password.encode(), bcrypt.gensalt())
        if self.user_exists(name):   # signed up meanwhile, while this hash was computed
            return f"The name {name!r} is taken. Choose another."
        self._add_signup(name, hashed)
        return None

    # --- logging in ---

    def _lock_left(self, key) -> float:
        return max(0.0, self._locked.get(key, 0.0) - self.clock())

    def _count_failure(self, key) -> None:
        now = self.clock()
        count, last = self._failures.get(key, (0, now))
        if now - last > self.seconds_before_next_try:
            count = 0   # old mistakes are forgiven
        count += 1
        if self.allowed_failed_logins and count >= self.allowed_failed_logins:
            self._locked[key] = now + self.seconds_before_next_try
            count = 0
        self._failures[key] = (count, now)
        if len(self._failures) > 10_000:   # addresses that come and go: keep memory bounded
            self._failures = {k: v for k, v in self._failures.items()
                              if now - v[1] <= self.seconds_before_next_try}
            self._locked = {k: t for k, t in self._locked.items() if t > now}

    async def authenticate(self, handler, data):
        name = self.normalize_username(data.get("username") or "")
        password = data.get("password") or ""
        key = (name, handler.request.remote_ip)
        left = self._lock_left(key)
        if left:
            handler.login_problem = (f"Too many failed logins for {name!r} from your address: "
                                     f"try again in {math.ceil(left / 60)} minutes.")
            return None
        info = self.get_user(name)
        valid = (info is not None and not too_long(password)
                 and await self._bcrypt(bcrypt.checkpw, password.encode(), info.password))
        if valid and info.is_authorized:
            self._failures.pop(key, None)
            return name
        if valid:
            handler.login_problem = (f"The account {name!r} is waiting for the instructor's "
                                     "approval.")
            return None
        self._count_failure(key)
        return None

    def get_handlers(self, app):
        ours = {r"/login": LoginHandler, r"/signup": SignUpHandler,
                r"/authorize/([^/]*)": ApproveHandler, r"/discard/([^/]*)": DiscardHandler,
                r"/change-password": ChangePasswordHandler,
                r"/change-password/([^/]+)": ChangePasswordAdminHandler}
        return [(path, ours.get(path, handler)) for path, handler in super().get_handlers(app)]


# --- the pages that differ from NativeAuthenticator's --------------------------------------------

class LoginHandler(handlers.LoginHandler):
    """The login form; says why a login failed when that helps (approval pending, locked)."""

    async def post(self):
        data = {key: self.get_argument(key, strip=key == "username")
                for key in self.request.body_arguments if key != "_xsrf"}
        user = await self.login_user(data)
        if user:
            self._jupyterhub_user = user
            self.redirect(self.get_next_url(user))
            return
        problem = getattr(self, "login_problem", None) or "Invalid username or password."
        self.finish(await self._render(login_error=problem, username=data.get("username")))


class SignUpHandler(handlers.SignUpHandler):
    """The sign-up form, with the course's rules and a precise reason when it refuses."""

    async def post(self):
        auth = self.authenticator
        if not auth.enable_signup:
            raise web.HTTPError(404)
        field = lambda key: self.get_body_argument(key, "", strip=False)
        name = auth.normalize_username(field("username").strip())
        problem = await auth.sign_up(name, field("signup_password"),
                                     field("signup_password_confirmation"))
        message = problem or ("Your sign-up has been sent to the admin: you can log in once "
                              "the instructor has approved it.")
        self.finish(await self.render_template(
            "signup.html", result_message=message,
            alert="alert-danger" if problem else "alert-info", ask_email=False,
            two_factor_auth=False, recaptcha_key=None, tos=auth.tos))


CONFIRM_PAGE = """{% extends "page.html" %}
{% block main %}
<div class="container">
  <form method="post" action="{{ action }}">
    <input type="hidden" name="_xsrf" value="{{ xsrf }}">
    <p>{{ question }}</p>
    <button type="submit" class="btn btn-jupyter">{{ button }}</button>
    <a class="btn btn-default" href="{{ base_url }}authorize">Back</a>
  </form>
</div>
{% endblock %}
"""


class _Confirmed(handlers.LocalBase):
    """A change that a GET only asks about; the form's POST (with its XSRF token) makes it."""

    def _info(self, name):
        info = UserInfo.find(self.db, name)
        if info is None:
            raise web.HTTPError(404, f"No sign-up named {name!r}")
        return info

    async def _ask(self, question, button):
        page = self.settings["jinja2_env"].from_string(CONFIRM_PAGE)
        self.finish(await page.render_async(**self.template_namespace, action=self.request.path,
                                            question=question, button=button))


class ApproveHandler(_Confirmed):
    @handlers.admin_users_scope
    async def get(self, name):
        if self._info(name).is_authorized:
            await self._ask(f"Withdraw the approval of {name}? They can no longer log in.",
                            "Withdraw approval")
        else:
            await self._ask(f"Approve {name}? They can then log in.", "Approve")

    @handlers.admin_users_scope
    async def post(self, name):
        self._info(name)
        UserInfo.change_authorization(self.db, name)
        self.redirect(self.hub.base_url + "authorize#" + name)


class DiscardHandler(_Confirmed):
    @handlers.admin_users_scope
    async def get(self, name):
        self._info(name)
        await self._ask(f"Discard the sign-up {name}?", "Discard")

    @handlers.admin_users_scope
    async def post(self, name):
        if not self._info(name).is_authorized:   # an approved account is never discarded here
            self.authenticator.delete_user(type("User", (), {"name": name}))
            if self.users.get(name) is not None:
                self.users.delete(name)
        self.redirect(self.hub.base_url + "authorize")


def _refusal(handler, fields):
    """A message for passwords bcrypt cannot take, before it sees (and raises on) them."""
    values = [handler.get_body_argument(f, "", strip=False) for f in fields]
    return TOO_LONG if too_long(*values) else None


class ChangePasswordHandler(handlers.ChangePasswordHandler):
    @web.authenticated
    async def post(self):
        fields = ("old_password", "new_password", "new_password_confirmation")
        problem = _refusal(self, fields)
        if problem is None:
            return await super().post()
        user = await self.get_current_user()
        self.finish(await self.render_template("change-password.html", user_name=user.name,
                                               result_message=problem, alert="alert-danger"))


class ChangePasswordAdminHandler(handlers.ChangePasswordAdminHandler):
    @handlers.admin_users_scope
    async def post(self, user_name):
        fields = ("new_password", "new_password_confirmation")
        problem = _refusal(self, fields)
        if problem is None:
            return await super().post(user_name)
        self.finish(await self.render_template("change-password-admin.html", user_name=user_name,
                                               result_message=problem, alert="alert-danger"))


# --- the command ---------------------------------------------------------------------------------

def read_password(name: str, from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    print(f"Choose a password for the hub account {name!r} ({MIN_LENGTH} characters to "
          f"{MAX_BYTES} bytes; you log in with it).")
    password = getpass.getpass(f"Password for {name}: ")
    if getpass.getpass("Again: ") != password:
        sys.exit("error: the passwords differ")
    return password


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", help="account name, e.g. instructor")
    parser.add_argument("--state", default=os.environ.get("LSTM_HUB_STATE") or os.getcwd(),
                        help="the hub's state folder "
                             "(default: $LSTM_HUB_STATE or the current one)")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input (for scripts)")
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing when the account exists already")
    args = parser.parse_args(argv)
    if name_problem(args.name):
        sys.exit(f"error: {name_problem(args.name)}")
    state = Path(args.state).resolve()
    state.mkdir(parents=True, exist_ok=True)
    if args.if_missing and has_account(db_url(state), args.name):
        return
    password = read_password(args.name, args.password_stdin)
    if password_problem(password):
        sys.exit(f"error: {password_problem(password)}")
    new = set_account(db_url(state), args.name, password)
    print(f"{'created' if new else 'updated'} approved account {args.name!r} in {state}")


if __name__ == "__main__":
    main()
