"""Privilege drop (option ``username``): bind as root, then run as that user and its groups only."""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import free_port
from daemon_support import (
    DEBIAN_GDNSDCTL,
    Site,
    a_records,
    alive,
    daemonize,
    debian_gdnsdctl,
    gdnsd,
    kill_all,
    query,
    wait_for,
)


def require_root() -> None:
    if os.geteuid() == 0:
        return
    message = "privilege-drop tests need root (they create a system user and bind as root)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    extra_group: str
    extra_gid: int


@pytest.fixture
def account() -> Iterator[Account]:
    """A throwaway system user with a supplementary group, removed afterwards."""
    require_root()
    suffix = secrets.token_hex(4)
    name, group = f"pygdt{suffix}", f"pygdg{suffix}"
    subprocess.run(["groupadd", "--system", group], check=True, capture_output=True)
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             "--user-group", "--groups", group, name],
            check=True, capture_output=True,
        )
        try:
            entry = pwd.getpwnam(name)
            yield Account(name, entry.pw_uid, entry.pw_gid, group, grp.getgrnam(group).gr_gid)
        finally:
            subprocess.run(["userdel", name], check=False, capture_output=True)
    finally:
        subprocess.run(["groupdel", group], check=False, capture_output=True)


def proc_ids(pid: int) -> dict[str, list[int]]:
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        lines = status.read().splitlines()
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            fields[key] = [int(part) for part in value.split()]
    return fields


@pytest.fixture
def readable_site() -> Iterator[Site]:
    """A site the dropped user can read (pytest's tmp dirs are private to root)."""
    with tempfile.TemporaryDirectory(prefix="pygdnsd-priv-") as root:
        os.chmod(root, 0o755)
        made = Site(Path(root) / "site", free_port())
        made.root.mkdir(mode=0o755)
        try:
            yield made
        finally:
            kill_all(made.cfgdir)


def test_daemon_runs_as_the_configured_user(account: Account, readable_site: Site) -> None:
    # account first: torn down last, once the daemon (running as it) is gone.
    site = readable_site.write(f"  username => {account.name}\n")
    pid = daemonize(site)
    ids = proc_ids(pid)
    assert ids["Uid"] == [account.uid] * 4  # real, effective, saved, filesystem
    assert ids["Gid"] == [account.gid] * 4
    assert sorted(ids["Groups"]) == sorted({account.gid, account.extra_gid})
    # Answers on the sockets it bound as root.
    assert a_records(query(site.port, "www.example.com")) == ["192.0.2.10"]

    for path, mode in (
        (site.run_dir, 0o700),
        (site.run_dir / "control.sock", 0o600),
        (site.pidfile, 0o644),
    ):
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == mode, path
        assert (st.st_uid, st.st_gid) == (account.uid, account.gid), path

    if DEBIAN_GDNSDCTL.exists():
        status = debian_gdnsdctl(site, "status")
        assert status.returncode == 0, status.stderr
    # The unprivileged daemon still reloads and cleans up after itself.
    assert gdnsd(site, "reload-zones").returncode == 0
    assert gdnsd(site, "stop").returncode == 0
    assert wait_for(lambda: not alive(pid), 5)
    assert not site.pidfile.exists()


def test_unknown_user_is_refused_before_serving(site: Site) -> None:
    require_root()
    site.write("  username => no-such-user-pygdnsd\n")
    result = gdnsd(site, "daemonize")
    assert result.returncode == 1
    assert "option 'username': no such user 'no-such-user-pygdnsd'" in result.stderr
    assert not site.pidfile.exists()
