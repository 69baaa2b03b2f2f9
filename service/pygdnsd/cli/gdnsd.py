"""The ``gdnsd`` command: ``gdnsd [-c CFGDIR] [-D] [-l] [-S] [-R|-i] ACTION`` (man gdnsd)."""

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
from pygdnsd.errors import GdnsdError
from pygdnsd.instance import load
from pygdnsd.lifecycle import daemon, verbs
from pygdnsd.lifecycle.daemon import StartRequest
from pygdnsd.lifecycle.daemonize import detach

logger = logging.getLogger("gdnsd")

DEFAULT_CFGDIR = "/etc/gdnsd"
EXIT_USAGE = 2  # what gdnsd 3.8.1 exits with on a bad command line
EXIT_FAILURE = 1
SERVING_ACTIONS = ("start", "daemonize")
# The initscript verbs: gdnsd works as its own initscript.
CONTROL_ACTIONS = ("stop", "status", "restart", "reload-zones", "condrestart", "try-restart")
ACTIONS = ("checkconf", *SERVING_ACTIONS, *CONTROL_ACTIONS)

USAGE = """\
Usage: gdnsd [-c /etc/gdnsd] [-D] [-l] [-S] [-R | -i] <action>
  -c - Configuration directory, default '/etc/gdnsd'
  -D - Enable verbose debug output
  -l - Send logs to syslog rather than stderr
  -S - Force 'zones_strict_data = true' for this invocation
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
  restart - Stop the running daemon (if any), then daemonize
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


def version_text() -> str:
    return f"pygdnsd version {__version__} (gdnsd 3.8.1 compatible)"


def parse_args(argv: Sequence[str]) -> Options:
    """Parse like gdnsd's getopt: options may follow the action; exactly one action."""
    try:
        flags, rest = getopt.gnu_getopt(list(argv), "c:DlSRix")
    except getopt.GetoptError as exc:
        raise BadUsage(str(exc)) from exc
    found = dict.fromkeys("DlSRix", False)
    cfgdir = DEFAULT_CFGDIR
    for flag, value in flags:
        if flag == "-c":
            cfgdir = value
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
    )


def checkconf(options: Options) -> int:
    load(options.cfgdir, options.strict_data)
    return 0


def start_request(options: Options) -> StartRequest:
    return StartRequest(options.cfgdir, options.strict_data, options.idempotent)


def start(options: Options) -> int:
    logger.info("%s @ pid %d", version_text(), os.getpid())
    return daemon.run(start_request(options), load=load)


FORK_REFUSED = (
    "daemonize forks the whole calling process; it runs only as the gdnsd command "
    "(main() without argv), not when main(argv) is called from other Python code"
)


def daemonize(options: Options, err: TextIO, may_fork: bool) -> int:
    """Detach; the foreground process exits 0 only once the daemon serves.

    The daemon itself never returns to the caller: it ends with ``os._exit``,
    so no code of whoever called ``main`` runs twice.
    """
    if not may_fork:
        print(f"error: {FORK_REFUSED}", file=err)
        return EXIT_FAILURE
    # The daemon works from "/": a relative -c must not change meaning.
    options = dataclasses.replace(options, cfgdir=Path(os.path.abspath(options.cfgdir)))
    verdict, report = detach()
    if verdict is not None:
        if verdict.ok:
            return 0
        print(f"error: {verdict.message}", file=err)
        return EXIT_FAILURE
    # stdio is /dev/null now; restart and condrestart get here without -l too.
    log.setup("syslog", debug=options.debug)
    status = EXIT_FAILURE
    try:
        logger.info("%s @ pid %d", version_text(), os.getpid())
        status = daemon.run(start_request(options), report, load=load)
    except GdnsdError as exc:
        logger.error("%s", exc)
    except BaseException:
        logger.exception("daemon failed")
    finally:
        logging.shutdown()
        os._exit(status)


def stop_then_daemonize(options: Options, err: TextIO, may_fork: bool) -> int:
    """restart without overlap; the replace issue swaps in an overlapped replace."""
    if not may_fork:
        print(f"error: {FORK_REFUSED}", file=err)
        return EXIT_FAILURE
    status = verbs.stop(options.cfgdir, err=err)
    if status != 0:
        return status
    return daemonize(options, err, may_fork)


# How restart works: the one place to swap for an overlapped replace.
RESTART = stop_then_daemonize


def not_implemented(options: Options) -> str | None:
    """Why this command line cannot run yet, or None."""
    if options.replace:
        return "replace (-R) is not implemented yet"
    return None


def run(options: Options, err: TextIO, may_fork: bool = False) -> int:
    action = options.action
    if action == "checkconf":
        return checkconf(options)
    if action == "start":
        return start(options)
    if action == "daemonize":
        return daemonize(options, err, may_fork)
    if action == "status":
        return verbs.status(options.cfgdir)
    if action == "stop":
        return verbs.stop(options.cfgdir, err=err)
    if action == "reload-zones":
        return verbs.reload_zones(options.cfgdir, err=err)
    if action == "restart":
        return RESTART(options, err, may_fork)
    # condrestart / try-restart: nothing running means nothing to do.
    if not verbs.is_running(options.cfgdir):
        print("info: gdnsd is not running, not restarting", file=err)
        return 0
    return RESTART(options, err, may_fork)


def main(argv: Sequence[str] | None = None, stderr: TextIO | None = None) -> int:
    err = stderr if stderr is not None else sys.stderr
    args = sys.argv[1:] if argv is None else argv
    if list(args) == ["--version"]:
        print(version_text())
        return 0
    try:
        options = parse_args(args)
    except BadUsage as exc:
        print(f"gdnsd: {exc}", file=err)
        print(version_text(), file=err)
        err.write(USAGE)
        return EXIT_USAGE
    missing = not_implemented(options)
    if missing is not None:
        # On stderr whatever -l says: like a failed daemonize's foreground process.
        print(f"error: {missing}", file=err)
        return EXIT_FAILURE
    log.setup("syslog" if options.syslog else "stderr", debug=options.debug, stream=err)
    try:
        # Only the program itself may fork (daemonize): an in-process caller
        # (argv given) would see its own process duplicated.
        return run(options, err, may_fork=argv is None)
    except GdnsdError as exc:
        logger.error("%s", exc)
        return EXIT_FAILURE
