"""systemd socket activation: the sockets ``gdnsd.socket`` passes, by label.

sd_listen_fds(3): when ``LISTEN_PID`` is our PID, fds 3 .. 3+LISTEN_FDS-1
are sockets systemd opened for us, named (in order) by the colon-separated
``LISTEN_FDNAMES``, which come from each socket's ``FileDescriptorName=``.

The labels we know:

- ``dns``: a DNS socket, UDP or TCP by its type (FileDescriptorName=
  names every socket of a unit, so one unit listing both a ListenDatagram=
  and a ListenStream= must use this one);
- ``dns-udp``: a UDP DNS socket (ListenDatagram=), checked to be one;
- ``dns-tcp``: a TCP DNS socket (ListenStream=, listening), checked to be one;
- ``control``: the control socket (a unix stream socket at the configured path).

The rule for DNS sockets: each is matched to a configured ``listen``
address by the address it is bound to (getsockname). A configured address
systemd passes sockets for is served on exactly those sockets, one thread
each: ``udp_threads``/``tcp_threads`` add no sockets to it, because systemd
created them as root and the kernel lets only the same user join an
SO_REUSEPORT group (list the address several times in gdnsd.socket for more
threads). Configured addresses systemd passes nothing for are bound as
usual. A passed socket whose address is not configured, or whose label or
type is wrong, is refused with an error naming it: the config and the
socket unit disagree, and the operator must fix one of them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field

from pygdnsd.config.addresses import format_address
from pygdnsd.config.options import ListenAddress
from pygdnsd.errors import ConfigError
from pygdnsd.transport.listeners import (
    IP_MTU_DISCOVER,
    IP_PKTINFO,
    IPTOS_LOWDELAY,
    PMTUDISC_OMIT,
    TCP,
    TCP_DEFER_SECONDS,
    UDP,
    BindError,
    ListenSocket,
    SocketSpec,
    open_tcp,
    open_udp,
    specs_for,
)

LISTEN_FDS_START = 3
DNS = "dns"
DNS_UDP = "dns-udp"
DNS_TCP = "dns-tcp"
CONTROL = "control"
KIND_OF_LABEL = {DNS_UDP: UDP, DNS_TCP: TCP}
ENV_NAMES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class ActivationError(ConfigError):
    """The sockets systemd passed cannot be used as the config asks."""


@dataclass(frozen=True, slots=True)
class PassedSocket:
    """One socket systemd passed: its fd number, label and the socket object (owns the fd)."""

    fd: int
    label: str
    sock: socket.socket


@dataclass(frozen=True, slots=True)
class Activated:
    """What the daemon uses instead of binding."""

    dns: list[ListenSocket]
    control: socket.socket | None
    labels: Mapping[SocketSpec, str] = field(default_factory=dict)  # each DNS socket's label

    @property
    def counts(self) -> dict[tuple[str, int, str], int]:
        """How many sockets systemd passed for each (host, port, kind)."""
        out: dict[tuple[str, int, str], int] = {}
        for listener in self.dns:
            key = (listener.spec.host, listener.spec.port, listener.spec.kind)
            out[key] = out.get(key, 0) + 1
        return out


def passed_sockets(environ: MutableMapping[str, str] | None = None, pid: int | None = None) -> list[PassedSocket]:
    """The sockets systemd passed us, or [] when none were (or they were meant for another PID).

    The variables are removed from ``environ`` (default: os.environ) so that
    no child process takes the fds for its own, as sd_listen_fds(unset=1) does.
    """
    env = environ if environ is not None else os.environ
    pid = pid if pid is not None else os.getpid()
    values = {name: env.get(name) for name in ENV_NAMES}
    for name in ENV_NAMES:
        env.pop(name, None)
    listen_pid, listen_fds, fdnames = values["LISTEN_PID"], values["LISTEN_FDS"], values["LISTEN_FDNAMES"]
    if listen_pid is None or listen_fds is None:
        return []
    try:
        if int(listen_pid) != pid:
            return []
        count = int(listen_fds)
    except ValueError:
        raise ActivationError(
            f"socket activation: LISTEN_PID '{listen_pid}' / LISTEN_FDS '{listen_fds}' are not numbers"
        ) from None
    if count <= 0:
        return []
    labels = fdnames.split(":") if fdnames else []
    if len(labels) != count:
        raise ActivationError(
            f"socket activation: LISTEN_FDS is {count} but LISTEN_FDNAMES has {len(labels)} names "
            f"('{fdnames or ''}'); give every socket in gdnsd.socket a FileDescriptorName="
        )
    out = []
    for offset, label in enumerate(labels):
        fd = LISTEN_FDS_START + offset
        os.set_inheritable(fd, False)  # ours alone: no child inherits it
        out.append(PassedSocket(fd, label, socket.socket(fileno=fd)))
    return out


def _dns_spec(item: PassedSocket) -> tuple[str, int, int, str]:
    """(host, port, family, kind) of a passed DNS socket; raises on a wrong type or family."""
    if item.label == DNS:
        kind = UDP if item.sock.type == socket.SOCK_DGRAM else TCP
    else:
        kind = KIND_OF_LABEL[item.label]
    want_type = socket.SOCK_DGRAM if kind == UDP else socket.SOCK_STREAM
    family = item.sock.family
    if family not in (socket.AF_INET, socket.AF_INET6) or item.sock.type != want_type:
        raise ActivationError(
            f"socket activation: fd {item.fd} labelled '{item.label}' is not an IP "
            f"{'datagram' if kind == UDP else 'stream'} socket "
            f"({'ListenDatagram=' if kind == UDP else 'ListenStream='} with an address:port in gdnsd.socket)"
        )
    host, port = item.sock.getsockname()[:2]
    return str(host), int(port), family, kind


def _same_host(configured: str, bound: str) -> bool:
    """Addresses compare as addresses: '::1' and '0:0::1' are the same."""
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in configured else socket.AF_INET, configured) == (
            socket.inet_pton(socket.AF_INET6 if ":" in bound else socket.AF_INET, bound)
        )
    except OSError:
        return configured == bound


def match(passed: Sequence[PassedSocket], endpoints: Sequence[ListenAddress], control_path: str) -> Activated:
    """Assign each passed socket to its configured address (see the module doc for the rule).

    On any mismatch every passed socket is closed and ActivationError names the socket.
    """
    dns: list[ListenSocket] = []
    control: socket.socket | None = None
    counts: dict[tuple[str, int, str], int] = {}
    labels: dict[SocketSpec, str] = {}
    try:
        for item in passed:
            if item.label == CONTROL:
                _check_control(item, control_path)
                control = item.sock
                continue
            if item.label != DNS and item.label not in KIND_OF_LABEL:
                raise ActivationError(
                    f"socket activation: fd {item.fd} has the unknown label '{item.label}' "
                    f"(FileDescriptorName= must be {DNS}, {DNS_UDP}, {DNS_TCP} or {CONTROL})"
                )
            host, port, family, kind = _dns_spec(item)
            endpoint = next((e for e in endpoints if e.port == port and _same_host(e.host, host)), None)
            if endpoint is None:
                configured = ", ".join(e.label for e in endpoints) or "none"
                raise ActivationError(
                    f"socket activation: {kind.upper()} socket {format_address(host, port)} "
                    f"({item.label}) is not a configured listen address (configured: {configured}); "
                    "make gdnsd.socket and the 'listen' option agree"
                )
            key = (endpoint.host, endpoint.port, kind)
            index = counts.get(key, 0)
            counts[key] = index + 1
            spec = SocketSpec(endpoint.host, endpoint.port, family, kind, index)
            tune(item.sock, spec, endpoint)
            dns.append(ListenSocket(spec, item.sock))
            labels[spec] = item.label
    except (ActivationError, OSError) as exc:
        for item in passed:
            item.sock.close()
        if isinstance(exc, ActivationError):
            raise
        raise ActivationError(f"socket activation: cannot use the passed sockets: {exc}") from exc
    return Activated(dns, control, labels)


def _check_control(item: PassedSocket, control_path: str) -> None:
    if item.sock.family != socket.AF_UNIX or item.sock.type != socket.SOCK_STREAM:
        raise ActivationError(f"socket activation: fd {item.fd} labelled '{CONTROL}' is not a unix stream socket")
    path = item.sock.getsockname()
    if path != control_path:
        raise ActivationError(
            f"socket activation: the '{CONTROL}' socket is '{path}' but the control socket of "
            f"this config is '{control_path}'"
        )


def tune(sock: socket.socket, spec: SocketSpec, endpoint: ListenAddress) -> None:
    """The per-socket options we would have set binding it ourselves (those that apply after bind)."""
    if spec.kind == UDP:
        if spec.family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, PMTUDISC_OMIT)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, IPTOS_LOWDELAY)
            if spec.wildcard:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, IPTOS_LOWDELAY)
        if endpoint.udp_rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, endpoint.udp_rcvbuf)
        if endpoint.udp_sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, endpoint.udp_sndbuf)
    else:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, TCP_DEFER_SECONDS)
    sock.setblocking(False)


def activated(
    endpoints: Sequence[ListenAddress],
    control_path: str,
    environ: MutableMapping[str, str] | None = None,
    pid: int | None = None,
) -> Activated | None:
    """The passed sockets matched to the config, or None when systemd passed none."""
    passed = passed_sockets(environ, pid)
    if not passed:
        return None
    return match(passed, endpoints, control_path)


def describe(activation: Activated) -> list[str]:
    """One log line per passed socket, naming its label and address."""
    lines = [
        f"socket activation: serving {s.spec.kind.upper()} {s.spec.label} on the socket systemd passed "
        f"({activation.labels.get(s.spec, DNS)} #{s.spec.index})"
        for s in activation.dns
    ]
    if activation.control is not None:
        lines.append(f"socket activation: the control socket is the one systemd passed ({CONTROL})")
    return lines


def keep_for(addresses: Mapping[tuple[str, int, str], int], wanted: Sequence[SocketSpec]) -> list[SocketSpec]:
    """``wanted`` without the sockets an activated address does not get (see the module doc).

    ``addresses`` maps (host, port, kind) of each activated address to how many
    sockets systemd passed for it: only that many are wanted there.
    """
    return [s for s in wanted if s.index < addresses.get((s.host, s.port, s.kind), s.index + 1)]


def open_unpassed(endpoints: Sequence[ListenAddress], activation: Activated) -> list[ListenSocket]:
    """Bind the sockets of every configured address systemd passed nothing for.

    On a failure the sockets opened here are closed and BindError raised.
    """
    passed = activation.counts
    specs = [
        spec
        for endpoint in endpoints
        for spec in specs_for(endpoint)
        if (spec.host, spec.port, spec.kind) not in passed
    ]
    by_address = {(e.host, e.port): e for e in endpoints}
    opened: list[ListenSocket] = []
    try:
        for spec in specs:
            opener = open_udp if spec.kind == UDP else open_tcp
            opened.append(ListenSocket(spec, opener(spec, by_address[(spec.host, spec.port)])))
    except BindError:
        for listener in opened:
            listener.sock.close()
        raise
    return opened


def counts_to_handoff(counts: Mapping[tuple[str, int, str], int]) -> list[list[object]]:
    """The counts as the takeover's JSON metadata carries them: [[host, port, kind, count], ...]."""
    return [[host, port, kind, count] for (host, port, kind), count in sorted(counts.items())]


def counts_from_handoff(value: object) -> dict[tuple[str, int, str], int]:
    """The inverse of counts_to_handoff; anything malformed (an older peer) counts as none."""
    out: dict[tuple[str, int, str], int] = {}
    if not isinstance(value, list):
        return out
    for entry in value:
        if (
            isinstance(entry, list)
            and len(entry) == 4
            and isinstance(entry[0], str)
            and isinstance(entry[1], int)
            and entry[2] in (UDP, TCP)
            and isinstance(entry[3], int)
        ):
            out[(entry[0], entry[1], entry[2])] = entry[3]
    return out
