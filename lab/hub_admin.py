"""Create (or reset the password of) an approved hub account from the server's terminal.

    python lab/hub_admin.py instructor              # asks for the password twice
    make hub-admin NAME=instructor                  # the same, for the `make hub` trial
    python lab/hub_admin.py --if-missing instructor # only when the account does not exist yet

Run it before the hub is reachable from the network, for every name in LSTM_HUB_ADMINS: with
NativeAuthenticator the first person to sign up under a name owns it, so an admin name left free
could be claimed by someone else. It writes to the hub's database in LSTM_HUB_STATE (default:
the current folder), creating the database if the hub has not run yet; the hub may be running.
"""
import argparse
import getpass
import os
import re
import sys
from pathlib import Path

import bcrypt
from jupyterhub import orm
from nativeauthenticator.orm import UserInfo  # registers its table with the hub's database

MIN_LENGTH = 10   # as c.NativeAuthenticator.minimum_password_length in jupyterhub_config.py
USERNAME = re.compile(r"^[a-z][a-z0-9_-]{1,30}$")   # as c.Authenticator.username_pattern


def has_account(db_url: str, name: str) -> bool:
    session = orm.new_session_factory(db_url)()
    try:
        return UserInfo.find(session, name) is not None
    finally:
        session.close()


def set_account(db_url: str, name: str, password: str) -> bool:
    """Store ``name`` with a bcrypt hash of ``password``, approved. True if the account is new."""
    session = orm.new_session_factory(db_url)()
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
    if not USERNAME.match(args.name):
        sys.exit(f"error: {args.name!r} is not a valid hub name (lowercase letter first, then "
                 "lowercase letters, digits, - or _; as in jupyterhub_config.py)")
    state = Path(args.state).resolve()
    state.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    if args.if_missing and has_account(db_url, args.name):
        return
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        print(f"Choose a password for the hub account {args.name!r} (at least {MIN_LENGTH} "
              "characters; you log in with it).")
        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Again: ") != password:
            sys.exit("error: the passwords differ")
    if len(password) < MIN_LENGTH:
        sys.exit(f"error: use a password of at least {MIN_LENGTH} characters")
    new = set_account(db_url, args.name, password)
    print(f"{'created' if new else 'updated'} approved account {args.name!r} in {state}")


if __name__ == "__main__":
    main()
