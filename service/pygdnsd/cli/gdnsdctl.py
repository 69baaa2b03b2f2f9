"""``gdnsdctl``: the control socket client, with gdnsd 3.8.1's command line and messages.

Exit status: 0 on success; 1 when no daemon answers (or on timeout); 2 on a
bad command line; 42 when the daemon refuses or fails the action ("fatal:").
"""

from __future__ import annotations

import getopt
import os
import re
import sys
import syslog
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from pygdnsd import __version__
from pygdnsd.config.options import CONFIG_FILE, DEFAULT_RUN_DIR
from pygdnsd.config.scalars import c_string
from pygdnsd.config.vscf import ConfigHash, ConfigList, ConfigScalar, parse_file
from pygdnsd.control import protocol
from pygdnsd.control.client import (
    CommsError,
    ControlClient,
    ControlError,
    ControlTimeout,
    DaemonNotRunning,
    DaemonStatus,
    RequestDenied,
    RequestFailed,
    TryLater,
)
from pygdnsd.errors import ConfigError
from pygdnsd.log import syslog_listening

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_FATAL = 42  # gdnsd's log_fatal() status

DEFAULT_CONFIG_DIR = "/etc/gdnsd"
DEFAULT_TIMEOUT = 47
MIN_TIMEOUT, MAX_TIMEOUT = 5, 300

# Actions whose intent a future daemon start fulfils, so -i may call them done.
IDEMPOTENT_WHEN_DEAD = frozenset({"stop", "reload-zones", "replace", "acme-dns-01-flush"})
ACTIONS = (
    "stop",
    "reload-zones",
    "replace",
    "status",
    "stats",
    "states",
    "acme-dns-01",
    "acme-dns-01-flush",
)

USAGE = f"""gdnsdctl version {".".join(map(str, protocol.COMPAT_VERSION))} (pygdnsd {__version__})
Usage: gdnsdctl [-c /etc/gdnsd] [-s <IP:port>] [-D] [-l] [-t 47] [-o] [-i] <action> [...]
  -c - Configuration directory (def /etc/gdnsd), for finding UNIX control socket path
  -s - TCP control socket address
  -D - Enable verbose debug output
  -l - Send logs to syslog rather than stderr
  -t - Timeout in seconds (def 47, range 5 - 300)
  -o - One-shot mode: do not retry soft failures (comms errors, replace-in-progress)
  -i - Ignore lack of a running daemon for stop, reload-zones, replace,
       and acme-dns-01-flush, reporting success instead of failure in those cases.
Actions:
  stop - Stops the running daemon
  reload-zones - Reload the running daemon's zone data
  replace - Ask daemon to spawn a takeover replacement of itself (updates code, config, zone data)
  status - Checks the running daemon's status
  stats - Dumps JSON statistics from the running daemon
  states - Dumps JSON monitored states
  acme-dns-01 - Create ACME DNS-01 payloads from additional arguments:
                <name> <payload> <name> <payload> ... [max {protocol.ACME_MAX_PER_GDNSDCTL} payloads]
  acme-dns-01-flush - Flush (remove) all ACME DNS-01 payloads added above
"""


class Usage(Exception):
    """The command line is wrong; an optional line goes before the usage text."""


@dataclass(frozen=True)
class Options:
    config_dir: str = DEFAULT_CONFIG_DIR
    tcp_address: tuple[str, int] | None = None
    debug: bool = False
    use_syslog: bool = False
    timeout: int = DEFAULT_TIMEOUT
    oneshot: bool = False
    ignore_dead: bool = False
    action: str = ""
    args: tuple[str, ...] = ()


def parse_args(argv: Sequence[str], prog: str = "gdnsdctl") -> Options:
    try:
        pairs, rest = getopt.getopt(list(argv), "c:s:Dlt:oi")
    except getopt.GetoptError as exc:
        opt = exc.opt
        if exc.msg.startswith("option -") and "requires argument" in exc.msg:
            raise Usage(f"{prog}: option requires an argument -- '{opt}'") from exc
        raise Usage(f"{prog}: invalid option -- '{opt}'") from exc
    values: dict[str, object] = {}
    for flag, value in pairs:
        if flag == "-c":
            values["config_dir"] = value
        elif flag == "-s":
            values["tcp_address"] = parse_tcp_address(value)
        elif flag == "-D":
            values["debug"] = True
        elif flag == "-l":
            values["use_syslog"] = True
        elif flag == "-t":
            if not value.isdigit() or not MIN_TIMEOUT <= int(value) <= MAX_TIMEOUT:
                raise Usage()
            values["timeout"] = int(value)
        elif flag == "-o":
            values["oneshot"] = True
        elif flag == "-i":
            values["ignore_dead"] = True
    if not rest:
        raise Usage()
    # Actions are matched ignoring case, as gdnsdctl's strcasecmp() does.
    return Options(action=rest[0].lower(), args=tuple(rest[1:]), **values)  # type: ignore[arg-type]


def check_action(options: Options) -> None:
    """Raise Usage unless the action and its arguments are valid.

    gdnsdctl checks this only once connected: with no daemon, a bad action
    reports the connection failure instead.
    """
    action, args = options.action, options.args
    if action not in ACTIONS:
        raise Usage()
    if action == "acme-dns-01":
        if not args or len(args) % 2 or len(args) > 2 * protocol.ACME_MAX_PER_GDNSDCTL:
            raise Usage()
    elif args:
        raise Usage()


def parse_tcp_address(text: str) -> tuple[str, int]:
    """``IP:port`` or ``[IPv6]:port``."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([0-9.]+):(\d+)", text)
    if match is None:
        raise Usage(f"Cannot parse TCP control socket address '{text}'")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 0 < port < 65536:
        raise Usage(f"Cannot parse TCP control socket address '{text}'")
    return (host, port)


# --- finding the socket ---------------------------------------------------------


def run_dir_from_config(top: ConfigHash | ConfigList) -> str | None:
    """``options => { run_dir => ... }`` from a parsed config, if set to a string.

    Like gdnsdctl, nothing else is checked: a config the daemon would reject
    for its values still tells where the socket is.
    """
    if not isinstance(top, ConfigHash):
        return None
    options = top.get("options")
    if not isinstance(options, ConfigHash):
        return None
    run_dir = options.get("run_dir")
    if not isinstance(run_dir, ConfigScalar):
        return None
    return c_string(run_dir)


def control_socket_path(config_dir: str, log: Log) -> str:
    config_file = Path(config_dir) / CONFIG_FILE
    if not config_file.exists():
        log.warning(f"No config file at '{config_file}', using defaults")
        return os.path.join(DEFAULT_RUN_DIR, "control.sock")
    log.debug(f"Loading configuration from '{config_file}'")
    try:
        top = parse_file(config_file)
    except ConfigError as exc:
        log.error(str(exc))
        raise Fatal(f"Loading configuration from '{config_file}' failed") from exc
    run_dir = run_dir_from_config(top)
    return os.path.join(run_dir or DEFAULT_RUN_DIR, "control.sock")


# --- output ---------------------------------------------------------------


class Log:
    """gdnsd-style ``level: message`` lines to stderr, or to syslog with -l (if one listens).

    syslog(3) drops lines when no syslog daemon listens: -l then keeps stderr,
    so a failure's reason is never lost (``log.route`` does the same for gdnsd).
    """

    _PRIORITIES = {
        "debug": syslog.LOG_DEBUG,
        "info": syslog.LOG_INFO,
        "warning": syslog.LOG_WARNING,
        "error": syslog.LOG_ERR,
        "fatal": syslog.LOG_CRIT,
    }

    def __init__(self, use_syslog: bool, debug: bool) -> None:
        self.use_syslog = use_syslog and syslog_listening()
        self.debug_enabled = debug
        if self.use_syslog:
            syslog.openlog("gdnsdctl", syslog.LOG_PID, syslog.LOG_DAEMON)

    def write(self, level: str, message: str) -> None:
        if self.use_syslog:
            syslog.syslog(self._PRIORITIES[level], f"{level}: {message}")
        else:
            sys.stderr.write(f"{level}: {message}\n")
            sys.stderr.flush()

    def debug(self, message: str) -> None:
        if self.debug_enabled:
            self.write("debug", message)

    def info(self, message: str) -> None:
        self.write("info", message)

    def warning(self, message: str) -> None:
        self.write("warning", message)

    def error(self, message: str) -> None:
        self.write("error", message)


class Fatal(Exception):
    """The action failed; the message is gdnsdctl's ``fatal:`` line."""


# --- actions --------------------------------------------------------------


def _fail(message: str, exc: ControlError, log: Log, report_denial: bool = True) -> NoReturn:
    if isinstance(exc, ControlTimeout | DaemonNotRunning):
        raise exc
    if (isinstance(exc, RequestDenied) and report_denial) or isinstance(exc, CommsError):
        log.error(str(exc))
    if isinstance(exc, RequestFailed) and exc.reason:
        # Our daemon says why (protocol.REASON_REQUESTS); gdnsd's never does.
        log.error(exc.reason)
    raise Fatal(message) from exc


def _guarded(message: str, log: Log, call: Callable[[], None], report_denial: bool = True) -> None:
    try:
        call()
    except ControlError as exc:
        _fail(message, exc, log, report_denial)


def run_action(
    options: Options,
    client: ControlClient,
    daemon: DaemonStatus,
    challenges: Sequence[protocol.AcmeChallenge],
    log: Log,
) -> None:
    action = options.action
    if action == "status":
        log.info(f"version {daemon.version_text} running at PID {daemon.pid}")
    elif action in ("stats", "states"):
        label = "Stats" if action == "stats" else "States"
        data = b""

        def fetch() -> None:
            nonlocal data
            data = client.stats() if action == "stats" else client.states()

        _guarded(f"{label} command failed", log, fetch)
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    elif action == "reload-zones":
        _guarded("Reload transaction failed", log, client.reload_zones)
        log.info("Zone data reloaded")
    elif action == "stop":
        _guarded("Stop command failed", log, client.stop)
        log.info("Stop command successful, daemon exited")
    elif action == "acme-dns-01":
        # gdnsdctl says nothing extra on a denial of this one.
        _guarded(
            "acme-dns-01 command failed",
            log,
            lambda: client.acme_dns_01(challenges),
            report_denial=False,
        )
        log.info("ACME DNS-01 challenges accepted")
    elif action == "acme-dns-01-flush":
        _guarded("Failed to flush ACME DNS-01 challenges", log, client.acme_dns_01_flush)
        log.info("ACME DNS-01 challenges flushed")
    elif action == "replace":
        run_replace(client, daemon, log)


def run_replace(client: ControlClient, daemon: DaemonStatus, log: Log) -> None:
    log.info(
        f"REPLACE[gdnsdctl]: Sending replace command to old daemon version "
        f"{daemon.version_text} running at PID {daemon.pid}"
    )
    try:
        client.request_replace()
    except ControlError as exc:
        _fail("REPLACE[gdnsdctl]: Replace command to old daemon failed", exc, log)
    try:
        new = client.connect()
    except ControlError as exc:
        if isinstance(exc, ControlTimeout):
            raise
        log.error(str(exc))
        raise Fatal("REPLACE[gdnsdctl]: Cannot connect to new daemon after replace") from exc
    log.info(
        f"REPLACE[gdnsdctl]: SUCCESS, new daemon version {new.version_text} running at PID {new.pid}"
    )


def parse_challenges(args: Sequence[str]) -> list[protocol.AcmeChallenge]:
    found = []
    for i in range(0, len(args), 2):
        try:
            found.append(protocol.parse_acme_challenge(args[i], args[i + 1]))
        except protocol.ProtocolError as exc:
            raise Fatal(str(exc)) from exc
    return found


def main(argv: Sequence[str] | None = None) -> int:
    prog = sys.argv[0] if argv is None else "gdnsdctl"
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--help"]:
        # Asked for, so on stdout and a success (gdnsd 3.8.1's gdnsdctl calls it an invalid option).
        sys.stdout.write(USAGE)
        return EXIT_OK
    try:
        options = parse_args(args, prog)
    except Usage as exc:
        if exc.args:
            sys.stderr.write(f"{exc.args[0]}\n")
        sys.stderr.write(USAGE)
        return EXIT_USAGE
    log = Log(options.use_syslog, options.debug)
    try:
        return run(options, log)
    except Usage:
        sys.stderr.write(USAGE)
        return EXIT_USAGE
    except Fatal as exc:
        log.write("fatal", str(exc))
        return EXIT_FATAL
    except ControlTimeout as exc:
        log.error(str(exc))
        return EXIT_ERROR
    except DaemonNotRunning as exc:
        log.error(str(exc))
        return EXIT_ERROR


def run(options: Options, log: Log) -> int:
    address: str | tuple[str, int]
    if options.tcp_address is not None:
        address = options.tcp_address
    else:
        address = control_socket_path(options.config_dir, log)

    def soft_failure(exc: ControlError) -> None:
        if isinstance(exc, CommsError):
            log.error(str(exc))
        log.warning(
            "Soft failure (comms error or blocked by an in-progress replace operation), "
            "retrying in ~1s..."
        )

    client = ControlClient(
        address, options.timeout, oneshot=options.oneshot, on_soft_failure=soft_failure
    )
    with client:
        try:
            daemon = client.connect()
        except ControlTimeout:
            raise
        except ControlError as exc:
            if isinstance(exc, DaemonNotRunning | RequestDenied | CommsError):
                log.error(str(exc))
            if not isinstance(exc, DaemonNotRunning):
                log.error(f"Failed to get daemon status over control socket {client.address_text}")
            if options.ignore_dead and options.action in IDEMPOTENT_WHEN_DEAD:
                log.info("No running daemon, succeeding")
                return EXIT_OK
            return EXIT_ERROR
        check_action(options)
        challenges = parse_challenges(options.args) if options.action == "acme-dns-01" else []
        run_action(options, client, daemon, challenges, log)
    return EXIT_OK


__all__ = ["TryLater", "main", "parse_args", "run_dir_from_config"]


if __name__ == "__main__":
    raise SystemExit(main())
