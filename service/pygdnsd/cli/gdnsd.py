"""The ``gdnsd`` command: ``gdnsd [-c CFGDIR] [-D] [-l] [-S] [-R|-i] ACTION`` (man gdnsd)."""

from __future__ import annotations

import getopt
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from pygdnsd import __version__, log
from pygdnsd.errors import GdnsdError
from pygdnsd.instance import Instance, load

logger = logging.getLogger("gdnsd")

DEFAULT_CFGDIR = "/etc/gdnsd"
EXIT_USAGE = 2  # what gdnsd 3.8.1 exits with on a bad command line
EXIT_FAILURE = 1
SERVING_ACTIONS = ("start", "daemonize")
LATER_ACTIONS = ("daemonize",)
ACTIONS = ("checkconf", *SERVING_ACTIONS)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

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


class StopRequest:
    """Set by SIGTERM/SIGINT; the main thread waits on it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum = 0

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum
        self.event.set()

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.handle)

    def wait(self) -> int:
        # Short waits keep the main thread returning to the interpreter,
        # where signal handlers run.
        while not self.event.wait(0.5):
            pass
        return self.signum


def start(options: Options) -> int:
    stop = StopRequest()
    stop.install()
    logger.info("%s @ pid %d", version_text(), os.getpid())
    loaded = load(options.cfgdir, options.strict_data)
    instance = Instance(loaded)
    sockets = instance.bind()
    instance.serve(sockets)
    logger.info("DNS listeners started")
    signum = stop.wait()
    instance.stop()
    instance.close_sockets()
    logger.info("Exiting cleanly on receipt of terminating signal %d", signum)
    return 0


def not_implemented(options: Options) -> str | None:
    """Why this command line cannot run yet, or None."""
    if options.replace:
        return "replace (-R) is not implemented yet"
    if options.action in LATER_ACTIONS:
        return f"action '{options.action}' is not implemented yet"
    return None


def run(options: Options) -> int:
    if options.action == "checkconf":
        return checkconf(options)
    return start(options)


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
        return run(options)
    except GdnsdError as exc:
        logger.error("%s", exc)
        return EXIT_FAILURE
