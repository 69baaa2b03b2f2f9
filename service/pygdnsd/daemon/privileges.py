"""Privilege drop for the ``username`` option: bind as root, then become that user.

Without systemd there is nobody else to do it. Under systemd the unit's
``User=`` does it instead, and ``username`` is best left unset.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from pygdnsd.errors import ConfigError, GdnsdError


class PrivilegeDropFailed(GdnsdError):
    """The process could not become the configured user; it must not go on."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups, the primary gid included

    @property
    def owner(self) -> tuple[int, int]:
        return (self.uid, self.gid)


def lookup_user(name: str) -> User:
    """The account named by ``username`` (ConfigError if there is none)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"option 'username': no such user '{name}'") from None
    groups = tuple(sorted(set(os.getgrouplist(name, entry.pw_gid))))
    return User(name, entry.pw_uid, entry.pw_gid, groups)


def drop_to(user: User) -> None:
    """setgroups, setgid, setuid (in that order: each needs the privilege the next removes)."""
    try:
        os.setgroups(list(user.groups))
        os.setgid(user.gid)
        os.setuid(user.uid)
    except OSError as exc:
        raise PrivilegeDropFailed(
            f"cannot switch to user '{user.name}' (uid {user.uid}): {exc.strerror}; refusing to run as "
            f"uid {os.geteuid()}"
        ) from exc
    # Verify rather than trust: a drop that left any root id behind is no drop.
    real, effective, saved = os.getresuid()
    rgid, egid, sgid = os.getresgid()
    if (real, effective, saved) != (user.uid,) * 3 or (rgid, egid, sgid) != (user.gid,) * 3:
        raise PrivilegeDropFailed(
            f"privilege drop to '{user.name}' incomplete (uids {real}/{effective}/{saved}, "
            f"gids {rgid}/{egid}/{sgid}); refusing to go on"
        )
    if user.uid != 0 and _can_regain_root():
        raise PrivilegeDropFailed(f"still able to regain root after dropping to '{user.name}'")


def _can_regain_root() -> bool:
    try:
        os.setuid(0)
    except OSError:
        return False
    return True
