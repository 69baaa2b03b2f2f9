"""The FreeBSD rc.d script: POSIX sh, rc.subr conventions, and the gdnsd verbs it relies on.

FreeBSD's rc.subr is not here, so the script runs against a small stand-in
(``FAKE_RC_SUBR``) that provides what the script calls (load_rc_config,
check_pidfile, run_rc_command), with a fake ``gdnsd`` that records its argv:
that checks the script's own logic (which command line each rc verb runs,
what happens when no daemon runs), not rc.subr's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "packaging" / "freebsd" / "gdnsd"


def venv_python() -> str:
    python = REPO / ".venv" / "bin" / "python"
    return str(python) if python.exists() else sys.executable


def ensure_checkbashisms() -> str:
    found = shutil.which("checkbashisms")
    if found is not None:
        return found
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("checkbashisms (Debian package devscripts) is missing and we are not root")
        pytest.skip("checkbashisms missing: apt-get install devscripts (as root)")
    from container.host_tools import apt_install

    apt_install(["devscripts"])
    found = shutil.which("checkbashisms")
    assert found is not None, "devscripts installed but no checkbashisms"
    return found


def test_script_parses_as_posix_sh() -> None:
    for shell in ("sh", "dash"):
        if shutil.which(shell):
            result = subprocess.run([shell, "-n", str(SCRIPT)], capture_output=True, text=True)
            assert result.returncode == 0, result.stderr


def test_checkbashisms_finds_nothing() -> None:
    result = subprocess.run(
        [ensure_checkbashisms(), "--posix", "--extra", str(SCRIPT)],
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_rc_subr_conventions() -> None:
    text = SCRIPT.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert os.access(SCRIPT, os.X_OK)
    for line in (
        "# PROVIDE: gdnsd",
        "# KEYWORD: shutdown",
        ". /etc/rc.subr",
        'name="gdnsd"',
        'rcvar="gdnsd_enable"',
        'load_rc_config "$name"',
        'extra_commands="reload checkconf replace"',
        'run_rc_command "$1"',
    ):
        assert f"\n{line}\n" in text, line
    for variable in ("command", "command_interpreter", "pidfile", "required_files"):
        assert re.search(rf"^{variable}=", text, re.MULTILINE), variable
    assert ': "${gdnsd_enable:=NO}"' in text


# --- the verbs the script runs exist in our gdnsd -------------------------------


def script_verbs() -> set[str]:
    """The gdnsd actions the script runs: the last word of each ${command} line and command_args."""
    verbs: set[str] = set()
    for line in SCRIPT.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if stripped.startswith("${command} ") or stripped.startswith("command_args="):
            verbs.add(stripped.rstrip('"').split()[-1])
    return verbs


def usage_actions() -> set[str]:
    """The actions ``gdnsd`` lists in its usage text (printed when run without an action)."""
    result = subprocess.run(
        [venv_python(), "-m", "pygdnsd"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "service")},
        timeout=60,
    )
    usage = result.stdout + result.stderr
    assert "Actions:" in usage, usage
    actions: set[str] = set()
    in_actions = False
    for line in usage.splitlines():
        if line.rstrip().endswith("ctions:") or line.startswith("Initscript actions"):
            in_actions = True
            continue
        match = re.match(r"^  ([a-z][a-z0-9-]*(?:, [a-z][a-z0-9-]*)*) - ", line)
        if in_actions and match:
            actions.update(name.strip() for name in match.group(1).split(","))
    return actions


def test_script_verb_list_is_what_we_expect() -> None:
    assert script_verbs() == {"daemonize", "checkconf", "replace"}


@pytest.mark.parametrize("verb", sorted(script_verbs()))
def test_gdnsd_usage_lists_the_verb_the_script_runs(verb: str) -> None:
    actions = usage_actions()
    assert "checkconf" in actions  # the parser read the usage text
    assert verb in actions, (
        f"the rc.d script runs 'gdnsd {verb}', gdnsd lists only {sorted(actions)}"
    )


# --- the script's logic, against a stand-in rc.subr -----------------------------

FAKE_RC_SUBR = r"""
load_rc_config() { :; }
check_pidfile() {
	[ -r "$1" ] || return 0
	read -r _pid < "$1"
	if kill -0 "$_pid" 2>/dev/null; then echo "$_pid"; fi
}
run_rc_command() {
	rc_flags="${gdnsd_flags:-}"
	case " start stop restart status ${extra_commands} " in
	*" $1 "*) ;;
	*) echo "unknown command $1" >&2; exit 3 ;;
	esac
	echo "vars: interpreter=${command_interpreter} pidfile=${pidfile} required=${required_files}" >> "$RC_LOG"
	eval "_cmd=\${${1}_cmd:-}"
	if [ -n "$_cmd" ]; then
		$_cmd
		return
	fi
	echo "default $1:" ${command} ${rc_flags} ${command_args} >> "$RC_LOG"
}
"""

FAKE_GDNSD = """#!/bin/sh
echo "gdnsd $*" >> "$RC_LOG"
exit "${FAKE_EXIT:-0}"
"""


class RcScript:
    def __init__(self, tmp: Path) -> None:
        self.log = tmp / "rc.log"
        self.log.touch()
        self.confdir = tmp / "etc"
        self.pidfile = tmp / "gdnsd.pid"
        rc_subr = tmp / "rc.subr"
        rc_subr.write_text(FAKE_RC_SUBR)
        self.program = tmp / "gdnsd-program"
        self.program.write_text(FAKE_GDNSD)
        self.program.chmod(0o755)
        self.script = tmp / "gdnsd.rc"
        self.script.write_text(SCRIPT.read_text().replace(". /etc/rc.subr", f". {rc_subr}"))

    def run(
        self, verb: str, *, pid: int | None = None, fake_exit: int = 0, **rc_conf: str
    ) -> subprocess.CompletedProcess[str]:
        if pid is not None:
            self.pidfile.write_text(f"{pid}\n")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "RC_LOG": str(self.log),
            "FAKE_EXIT": str(fake_exit),
            "gdnsd_program": str(self.program),
            "gdnsd_confdir": str(self.confdir),
            "gdnsd_pidfile": str(self.pidfile),
            **rc_conf,
        }
        return subprocess.run(
            ["sh", str(self.script), verb], env=env, capture_output=True, text=True, timeout=30
        )

    def calls(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.startswith("gdnsd ")]

    def lines(self, prefix: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.startswith(prefix)]


@pytest.fixture
def rc(tmp_path: Path) -> RcScript:
    return RcScript(tmp_path)


def test_start_daemonizes_with_the_confdir_and_flags(rc: RcScript) -> None:
    assert rc.run("start", gdnsd_flags="-D").returncode == 0
    assert rc.lines("default start:") == [
        f"default start: {rc.program} -D -c {rc.confdir} daemonize"
    ]
    # The interpreter rc.subr matches in ps output comes from the program's #! line.
    assert rc.lines("vars:") == [
        f"vars: interpreter=/bin/sh pidfile={rc.pidfile} required={rc.confdir}/config"
    ]


def test_default_pidfile_is_under_var_run(rc: RcScript) -> None:
    env_without_pidfile = {"gdnsd_pidfile": ""}
    rc.run("status", **env_without_pidfile)
    assert rc.lines("vars:")[0].split()[2] == "pidfile=/var/run/gdnsd/gdnsd.pid"


def test_checkconf_runs_gdnsd_checkconf(rc: RcScript) -> None:
    assert rc.run("checkconf").returncode == 0
    assert rc.calls() == [f"gdnsd -c {rc.confdir} checkconf"]
    assert rc.run("checkconf", fake_exit=1).returncode == 1


@pytest.mark.parametrize("verb", ["reload", "replace", "restart"])
def test_reload_replace_restart_of_a_running_daemon_replace_it(rc: RcScript, verb: str) -> None:
    result = rc.run(verb, pid=os.getpid())
    assert result.returncode == 0, result.stderr
    assert rc.calls() == [f"gdnsd -c {rc.confdir} replace"]
    assert rc.lines("default ") == []  # no stop, no start


@pytest.mark.parametrize("verb", ["reload", "replace", "restart"])
def test_a_failed_replace_fails_the_command(rc: RcScript, verb: str) -> None:
    assert rc.run(verb, pid=os.getpid(), fake_exit=1).returncode == 1


@pytest.mark.parametrize("verb", ["reload", "replace"])
def test_reload_without_a_daemon_fails_without_running_gdnsd(rc: RcScript, verb: str) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    result = rc.run(verb, pid=dead.pid)
    assert result.returncode == 1
    assert "not running" in result.stderr
    assert rc.calls() == []


def test_restart_without_a_daemon_starts_one(rc: RcScript) -> None:
    assert rc.run("restart").returncode == 0
    assert rc.calls() == []
    assert rc.lines("default start:") == [f"default start: {rc.program} -c {rc.confdir} daemonize"]


def test_unknown_verb_is_refused(rc: RcScript) -> None:
    assert rc.run("frobnicate").returncode == 3
