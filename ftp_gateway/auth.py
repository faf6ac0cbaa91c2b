"""The authorizer: virtual users from the users file, home = the user's site root.

A DummyAuthorizer subclass so pyftpdlib's permission logic (`has_perm`, per-directory
overrides) is reused; the user table is a view of the users file, re-read on change.
"""

from __future__ import annotations

import os
from typing import Any

from pyftpdlib.authorizers import AuthenticationFailed, DummyAuthorizer

from .users import UsersStore, burn_time_like_a_check, verify_password

LOGIN_FAILED = "Authentication failed."


class SiteAuthorizer(DummyAuthorizer):  # type: ignore[misc]
    def __init__(self, store: UsersStore) -> None:
        super().__init__()
        self.store = store

    @property
    def user_table(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "home": os.path.realpath(user.site),
                "perm": user.perm,
                "operms": {},
                "msg_login": "Login successful.",
                "msg_quit": "Goodbye.",
            }
            for name, user in self.store.snapshot().items()
        }

    @user_table.setter
    def user_table(self, value: dict[str, Any]) -> None:
        """DummyAuthorizer.__init__ assigns an empty table; the file is the table."""

    def validate_authentication(self, username: str, password: str, handler: Any) -> None:
        user = self.store.get(username)
        if user is None:
            burn_time_like_a_check(password)
            raise AuthenticationFailed(LOGIN_FAILED)
        if not verify_password(password, user.hash):
            raise AuthenticationFailed(LOGIN_FAILED)
        if not os.path.isdir(user.site):
            # Same message as a wrong password; the admin sees the cause in the log.
            handler.log(f"site directory of {username!r} is missing: {user.site}")
            raise AuthenticationFailed(LOGIN_FAILED)

    def get_home_dir(self, username: str) -> str:
        user = self.store.get(username)
        if user is None:
            raise AuthenticationFailed(LOGIN_FAILED)
        return os.path.realpath(user.site)

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        # A user deleted mid-session loses every permission at once.
        if self.store.get(username) is None:
            return False
        return bool(super().has_perm(username, perm, path))

    def get_perms(self, username: str) -> str:
        user = self.store.get(username)
        return user.perm if user is not None else ""

    def get_msg_login(self, username: str) -> str:
        return "Login successful."

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."
