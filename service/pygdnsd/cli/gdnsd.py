"""The ``gdnsd`` command: ``gdnsd [-c CFGDIR] [-D] [-l] [-S] [-t TIMEOUT] [-R|-i] ACTION`` (man gdnsd).

``replace`` (and ``restart``, its initscript name) is the synchronous
overlapped replace: it double-forks a new daemon with ``-R`` and exits 0
only once that daemon serves and the old one is gone; non-zero with the
reason otherwise, or after ``-t`` seconds (default 300). With no daemon
running it is a plain daemonize, as gdnsd's ``-R`` starts normally when
there is nothing to replace.
"""

from __future__ import annotations

import dataclasses
import getopt
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pygdnsd import __version__, log
from pygdnsd.daemon import daemon, initscript_verbs
from pygdnsd.daemon.daemon import StartRequest
from pygdnsd.daemon.daemonize import Verdict, detach
from pygdnsd.daemon.pidfile import PidfileState, probe
from pygdnsd.errors import GdnsdError, describe
from pygdnsd.instance import load
from pygdnsd.replace.spawn import Program
from pygdnsd.replace.standing import what_serves
from pygdnsd.systemd import unit_verbs
from pygdnsd.systemd.journal import journal_wanted

logger = logging.getLogger("gdnsd")

DEFAULT_CFGDIR = "/etc/gdnsd"
EXIT_USAGE = 2  # what gdnsd 3.8.1 exits with on a bad command line
EXIT_FAILURE = 1
SERVING_ACTIONS = ("start", "daemonize")
# The initscript verbs: gdnsd works as its own initscript.
CONTROL_ACTIONS = ("stop", "status", "replace", "restart", "reload-zones", "condrestart", "try-restart")
DEFAULT_REPLACE_TIMEOUT = 300.0
OLD_PID_TIMEOUT = 1.0
ACTIONS = ("checkconf", *SERVING_ACTIONS, *CONTROL_ACTIONS)

# The first line is gdnsd 3.8.1's; -t only applies to the replacing verbs.
USAGE = f"""\
Usage: gdnsd [-c /etc/gdnsd] [-D] [-l] [-S] [-R | -i] <action>
       gdnsd [-c /etc/gdnsd] [-D] [-l] [-S] [-t {DEFAULT_REPLACE_TIMEOUT:g}] replace|restart|condrestart|try-restart
       gdnsd --help | --version
  -c - Configuration directory, default '/etc/gdnsd'
  -D - Enable verbose debug output
  -l - Send logs to syslog rather than stderr
  -S - Force 'zones_strict_data = true' for this invocation
  -t - Seconds replace/restart waits for the new daemon, default {DEFAULT_REPLACE_TIMEOUT:g} (pygdnsd)
  -R - Attempt downtimeless replace of another instance
  -i - Idempotent mode for start/daemonize: exit 0 if already running
       (-R and -i cannot be used together)
Actions:
  checkconf - Checks validity of config and zone files
  start - Start as a regular foreground process
  daemonize - Start as a background daemon (implies -l)
Initscript actions (pygdnsd):
  stop - Stop the running daemon; returns once it has exited
  status - Report whether a daemon runs (exit 0 running, 1 dead with pidfile, 3 stopped)
  replace - Overlapped replace of the running daemon by a new one (daemonize if
            none runs); returns once the new one serves and the old one is gone
  restart - The same as replace
  reload-zones - Reload the running daemon's zone data
  condrestart, try-restart - restart, but only if a daemon is running
"""


class BadUsage(Exception):
    """The command line cannot be run; the message (if any) precedes the usage text."""


@dataclass(frozen=True, slots=True)
class Options:
    cfgdir: Path
    action: str
    debug: bool = False
    syslog: bool = False
    strict_data: bool = False
    replace: bool = False
    idempotent: bool = False
    timeout: float = DEFAULT_REPLACE_TIMEOUT


def version_text() -> str:
    return f"pygdnsd version {__version__} (gdnsd 3.8.1 compatible)"


def parse_args(argv: Sequence[str]) -> Options:
    """Parse like gdnsd's getopt: options may follow the action; exactly one action."""
    try:
        flags, rest = getopt.gnu_getopt(list(argv), "c:DlSRixt:")
    except getopt.GetoptError as exc:
        raise BadUsage(str(exc)) from exc
    found = dict.fromkeys("DlSRix", False)
    cfgdir = DEFAULT_CFGDIR
    timeout = DEFAULT_REPLACE_TIMEOUT
    for flag, value in flags:
        if flag == "-c":
            cfgdir = value
        elif flag == "-t":
            timeout = parse_timeout(value)
        else:
            found[flag[1]] = True
    if found["R"] and found["i"]:
        raise BadUsage("-R and -i cannot be used together")
    if len(rest) != 1:
        raise BadUsage("exactly one action is required" if not rest else f"unexpected argument '{rest[1]}'")
    action = rest[0]
    if action not in ACTIONS:
        raise BadUsage(f"unknown action '{action}'")
    if found["x"]:
        # gdnsd 3 still accepts its removed -x flag, logging an error.
        print("error: The commandline option '-x' has been removed.", file=sys.stderr)
    return Options(
        cfgdir=Path(cfgdir),
        action=action,
        debug=found["D"],
        syslog=found["l"] or action == "daemonize",
        strict_data=found["S"],
        replace=found["R"],
        idempotent=found["i"],
        timeout=timeout,
    )


def parse_timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadUsage(f"-t: '{text}' is not a number of seconds") from None
    if not 0 < value <= 86400:
        raise BadUsage(f"-t: {text} is out of range (0 - 86400 seconds)")
    return value


def checkconf(options: Options, own_process: bool = False) -> int:
    loaded = load(options.cfgdir, options.strict_data)
    if own_process:
        # Nothing needs the zones freed, and freeing a big zone set object by
        # object is a noticeable share of checkconf's time (0.2 s for 1M records).
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    del loaded
    return 0


def start_request(options: Options) -> StartRequest:
    return StartRequest(
        options.cfgdir, options.strict_data, options.idempotent, options.replace, replacement_program(options)
    )


def replacement_program(options: Options) -> Program:
    """What a REQ_REPL starts: the gdnsd we run as (``sys.argv[0]``), with our -D, -l and -S, as gdnsd passes its own."""
    flags = [flag for flag, on in (("-D", options.debug), ("-l", options.syslog), ("-S", options.strict_data)) if on]
    return Program.ours(sys.argv[0], flags)


def start(options: Options) -> int:
    logger.info("%s @ pid %d", version_text(), os.getpid())
    return daemon.run(start_request(options), load=load)


FORK_REFUSED = (
    "daemonize forks the whole calling process; it runs only as the gdnsd command "
    "(main() without argv), not when main(argv) is called from other Python code"
)


def daemon_log_sink() -> log.Sink:
    """The journal when systemd runs us (ExecStart or ExecReload), else syslog."""
    return "journal" if journal_wanted() else "syslog"


def daemon_keeps_stderr() -> bool:
    """Whether the daemon about to detach keeps our stderr: its log's only way out.

    Only when no log daemon listens (``log.route``); and only a terminal or a
    file (``log.keeps_lines``). Otherwise the operator hears now that the
    daemon's lines will be lost, and how to keep them.
    """
    chosen = log.route(daemon_log_sink())
    if chosen.sink != "stderr":
        return False
    if log.keeps_lines(sys.stderr.fileno()):
        return True
    logger.warning(
        "%s, and stderr is no terminal or file the daemon may keep: its log is lost "
        "(send stderr to a file, 2>>FILE, or run 'gdnsd start' under a supervisor)",
        chosen.why,
    )
    return False


def detached_verdict(options: Options, timeout: float | None = None) -> Verdict:
    """Fork off the daemon; return (in the foreground only) what it reported.

    The daemon itself never returns to the caller: it ends with ``os._exit``,
    so no code of whoever called ``main`` runs twice.
    """
    # The daemon works from "/": a relative -c must not change meaning.
    options = dataclasses.replace(options, cfgdir=Path(os.path.abspath(options.cfgdir)))
    verdict, report = detach(timeout, keep_stderr=daemon_keeps_stderr())
    if verdict is not None:
        return verdict
    # stdio is /dev/null now (stderr unless kept); replace and condrestart get here without -l too.
    log.setup(daemon_log_sink(), debug=options.debug)
    status = EXIT_FAILURE
    try:
        logger.info("%s @ pid %d", version_text(), os.getpid())
        status = daemon.run(start_request(options), report, load=load)
    except GdnsdError as exc:
        logger.error("%s", describe(exc))
    except BaseException as exc:
        logger.exception("the daemon failed: %s", describe(exc))
    finally:
        logging.shutdown()
        os._exit(status)


def daemonize(options: Options, err: TextIO, may_fork: bool) -> int:
    """Detach; the foreground process exits 0 only once the daemon serves."""
    if not may_fork:
        print(f"error: {FORK_REFUSED}", file=err)
        return EXIT_FAILURE
    verdict = detached_verdict(options)
    if verdict.ok:
        return 0
    print(f"error: {verdict.message}", file=err)
    return EXIT_FAILURE


def replace(options: Options, err: TextIO, may_fork: bool) -> int:
    """The helper: ``-R daemonize`` that waits at most ``-t`` seconds, and says how it went.

    Under systemd this is ExecReload: its exit status is the reload's result.
    With no daemon running it starts one and, as gdnsd's ``-R`` then, says
    nothing of a replace. After a failure it says what serves, as found.
    """
    if not may_fork:
        print(f"error: {FORK_REFUSED}", file=err)
        return EXIT_FAILURE
    # The pidfile's word, not a control-socket round trip: a hung old daemon
    # must not hold the helper up past -t.
    where = initscript_verbs.Where.of(options.cfgdir)
    found = probe(where.pidfile)
    old_pid = found.pid if found.state is PidfileState.RUNNING else None
    if old_pid is None:
        # No live pidfile: gdnsd 3.8.1 writes none. A control socket answers at once or refuses at once.
        running = initscript_verbs.find_running(where, OLD_PID_TIMEOUT)
        old_pid = running.pid if running is not None else None
    fields: dict[str, object] = {"GDNSD_EVENT": "replace-begin"}
    if old_pid is not None:
        fields["GDNSD_OLD_PID"] = old_pid
        logger.info("REPLACE[helper]: replacing the daemon at PID %d", old_pid, extra=fields)
    verdict = detached_verdict(dataclasses.replace(options, replace=True), options.timeout)
    if verdict.pid is not None:
        fields["GDNSD_NEW_PID"] = verdict.pid
    if verdict.ok:
        if old_pid is not None:
            logger.info(
                "REPLACE[helper]: done: PID %s serves, the old daemon is gone",
                verdict.pid,
                extra={**fields, "GDNSD_EVENT": "replace-done"},
            )
        return 0
    if old_pid is None:
        # A start, as gdnsd -R with nothing to replace: its failure reads as daemonize's.
        print(f"error: {verdict.message}", file=err)
        return EXIT_FAILURE
    logger.error(
        "REPLACE[helper]: the replace failed (%s); %s",
        verdict.message,
        what_serves(where, old_pid, options.cfgdir),
        extra={**fields, "GDNSD_EVENT": "replace-failed"},
    )
    if not logs_to_stderr(err):
        print(f"error: {verdict.message}", file=err)
    return EXIT_FAILURE


def logs_to_stderr(err: TextIO) -> bool:
    """Whether the log already went to ``err`` (no -l): then the reason is printed once."""
    return any(
        isinstance(handler, logging.StreamHandler) and handler.stream is err
        for handler in logging.getLogger().handlers
    )


# restart is the overlapped replace: no moment without a daemon.
RESTART = replace


REPLACE_REFUSED = (
    "-R takes over the running daemon's sockets and makes this process the daemon; it runs "
    "only as the gdnsd command (main() without argv), not when main(argv) is called from "
    "other Python code"
)


def refused_in_process(options: Options) -> str | None:
    """Why this command line cannot run inside another program's process, or None."""
    if options.replace:
        return REPLACE_REFUSED
    return None


def run(options: Options, err: TextIO, may_fork: bool = False) -> int:
    action = options.action
    if action == "checkconf":
        return checkconf(options, own_process=may_fork)
    if action in unit_verbs.ROUTED_ACTIONS:
        # Under systemd, a daemon of gdnsd.service is stopped and replaced by
        # systemd (D-Bus), never behind its back: see systemd/unit.py.
        unit = unit_verbs.managing_unit(options.cfgdir)
        if unit is not None:
            return unit_verbs.run(unit, action, options.cfgdir, options.timeout, sys.stdout, err)
    if action == "start":
        return start(options)
    if action == "daemonize":
        return daemonize(options, err, may_fork)
    if action == "status":
        return initscript_verbs.status(options.cfgdir)
    if action == "stop":
        return initscript_verbs.stop(options.cfgdir, err=err)
    if action == "reload-zones":
        return initscript_verbs.reload_zones(options.cfgdir, err=err)
    if action in ("replace", "restart"):
        return RESTART(options, err, may_fork)
    # condrestart / try-restart: nothing running means nothing to do.
    if not initscript_verbs.is_running(options.cfgdir):
        print("info: gdnsd is not running, not restarting", file=err)
        return 0
    return RESTART(options, err, may_fork)


def main(argv: Sequence[str] | None = None, stderr: TextIO | None = None) -> int:
    err = stderr if stderr is not None else sys.stderr
    args = sys.argv[1:] if argv is None else argv
    if list(args) == ["--version"]:
        print(version_text())
        return 0
    if list(args) == ["--help"]:
        # Asked for, so on stdout and a success (gdnsd 3.8.1 calls it an invalid option).
        print(version_text())
        sys.stdout.write(USAGE)
        return 0
    try:
        options = parse_args(args)
    except BadUsage as exc:
        print(f"gdnsd: {exc}", file=err)
        print(version_text(), file=err)
        err.write(USAGE)
        return EXIT_USAGE
    refused = refused_in_process(options) if argv is not None else None
    if refused is not None:
        # On stderr whatever -l says: like a failed daemonize's foreground process.
        print(f"error: {refused}", file=err)
        return EXIT_FAILURE
    # Only a daemon says where its log goes instead of syslog: "start" here,
    # a detached one in detached_verdict (this process, the foreground, does not serve).
    log.setup(
        daemon_log_sink() if options.syslog else "stderr",
        debug=options.debug,
        stream=err,
        announce=options.action == "start",
    )
    try:
        # Only the program itself may fork (daemonize): an in-process caller
        # (argv given) would see its own process duplicated.
        return run(options, err, may_fork=argv is None)
    except GdnsdError as exc:
        logger.error("%s", describe(exc))
        return EXIT_FAILURE
