"""One serving instance: config and zones in, listening sockets and threads out.

``load`` reads the config, sets up the monitor and resolver plugins DYNA/DYNC
use (nothing started), and reads every zone (all that ``checkconf`` does).
``Instance`` turns that into a Responder and serves it on sockets it is given
(``serve``): sockets it opened itself (``bind``) or, in a replace, sockets a
previous daemon handed over.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pygdnsd.config.options import Config, ListenAddress, load_config
from pygdnsd.engine.challenges import ChallengeSet
from pygdnsd.engine.responder import EngineSettings, Responder
from pygdnsd.engine.stats import Stats
from pygdnsd.errors import ConfigError
from pygdnsd.plugins.setup import DynamicSetup, build_dynamic
from pygdnsd.transport import workers
from pygdnsd.transport.listeners import UDP, ListenSocket, open_listeners
from pygdnsd.transport.tcp import TcpLimits, TcpServer
from pygdnsd.transport.udp import UdpServer
from pygdnsd.zones.loader import load_zones
from pygdnsd.zones.model import ZoneSet
from pygdnsd.zones.settings import ZoneSettings

log = logging.getLogger(__name__)

COOKIE_KEY_SIZE = 32
AUTOKEY_NAME = "cookie.autokey"


def cookie_secret(config: Config) -> bytes:
    """The server-cookie key: ``cookie_key_file``, else ``run_dir/cookie.autokey``, else new."""
    key_file = config.cookie_key_file
    if key_file is not None:
        try:
            key = key_file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cookie_key_file '{key_file}': cannot read: {exc.strerror}") from exc
        if len(key) != COOKIE_KEY_SIZE:
            raise ConfigError(
                f"cookie_key_file '{key_file}': must hold exactly {COOKIE_KEY_SIZE} bytes, has {len(key)}"
            )
        return key
    autokey = config.run_dir / AUTOKEY_NAME
    try:
        key = autokey.read_bytes()
        if len(key) == COOKIE_KEY_SIZE:
            return key
    except OSError:
        pass
    key = os.urandom(COOKIE_KEY_SIZE)
    try:
        autokey.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(autokey, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(key)
    except OSError as exc:
        log.error("Cannot persist the cookie key to '%s': %s", autokey, exc.strerror)
    return key


@dataclass(frozen=True, slots=True)
class Loaded:
    """Everything read from the config dir."""

    config: Config
    zones: ZoneSet
    dynamic: DynamicSetup | None = None  # the monitor and plugins; None for static-only callers


def read_config(cfgdir: Path, strict_data: bool = False) -> Config:
    """Read and check the config; log its warnings and the listeners it configures."""
    config = load_config(cfgdir, strict_data_override=strict_data)
    for warning in config.warnings:
        log.warning("%s", warning)
    for address in config.listen:
        if address.tcp_proxy:
            log.info("DNS listener threads (%d TCP PROXY) configured for %s", address.tcp_threads, address.label)
            continue
        log.info(
            "DNS listener threads (%d UDP + %d TCP) configured for %s",
            address.udp_threads,
            address.tcp_threads,
            address.label,
        )
    return config


def read_zones(config: Config, dynamic: DynamicSetup | None = None) -> ZoneSet:
    """Every zone of ``config``'s zones dir; ZoneError (file:line) on the first problem."""
    resolvers = dynamic.resolvers if dynamic else None
    return load_zones(config.zones_dir, ZoneSettings.from_config(config), resolvers)


def load(cfgdir: Path, strict_data: bool = False) -> Loaded:
    """Read the config, the plugins and every zone; raise ConfigError/ZoneError on the first problem."""
    config = read_config(cfgdir, strict_data)
    dynamic = build_dynamic(config)
    return Loaded(config, read_zones(config, dynamic), dynamic)


class Instance:
    """A Responder over loaded data, served by UDP and TCP threads."""

    def __init__(self, loaded: Loaded, stats: Stats | None = None, secret: bytes | None = None) -> None:
        self.config = loaded.config
        self.stats = stats if stats is not None else Stats()
        key = secret if secret is not None else cookie_secret(loaded.config)
        self.dynamic = loaded.dynamic
        settings = EngineSettings.from_config(loaded.config, key)
        if loaded.dynamic is None:
            self.responder = Responder(loaded.zones, settings, self.stats)
        else:
            self.responder = Responder(loaded.zones, settings, self.stats, dynamic=loaded.dynamic.resolvers)
        self.endpoints = loaded.config.listen
        self.sockets: list[ListenSocket] = []
        self._udp: UdpServer | None = None
        self._tcp: TcpServer | None = None
        self._workers: workers.WorkerPool | None = None
        # Totals are read (control STAT, /metrics) while workers retire into ``stats``:
        # the switch from "pool counts them" to "stats holds them" is atomic under it.
        self._totals = threading.Lock()
        # Zones and challenges change from different threads (a reload, the
        # control socket, challenge expiry): one at a time, so that neither
        # swap undoes the other and workers hear challenge sets in order.
        self._swap = threading.Lock()

    @property
    def processes(self) -> int:
        """How many processes serve: one per SO_REUSEPORT index any address has."""
        return max((max(e.udp_threads, e.tcp_threads) for e in self.endpoints), default=1)

    def bind(self) -> list[ListenSocket]:
        """Open every listening socket the config asks for (raises BindError)."""
        return open_listeners(self.endpoints)

    def serve(self, sockets: Sequence[ListenSocket]) -> None:
        """Start serving ``sockets``; returns once every serving thread and worker runs.

        Sockets of index 0 are served here; with more per address, worker
        processes serve the others (``transport.workers``).
        """
        by_address = {(e.host, e.port): e for e in self.endpoints}
        self.sockets = list(sockets)
        udp = [s for s in self.sockets if s.spec.kind == UDP]
        tcp = []
        for listener in self.sockets:
            if listener.spec.kind == UDP:
                continue
            address = by_address.get((listener.spec.host, listener.spec.port))
            if address is None:
                address = ListenAddress(listener.spec.host, listener.spec.port)
            tcp.append((listener, TcpLimits.of(address)))
        own, *others = workers.split(udp, tcp, self.processes)
        # A share can be empty: systemd passed one socket where the config asks for more.
        shares = [own, *(share for share in others if share.udp or share.tcp)]
        self._udp = UdpServer(own.udp, self.responder, self.stats)
        self._tcp = TcpServer(list(own.tcp), self.responder, self.stats)
        self._udp.start()
        self._tcp.start()
        if len(shares) > 1:
            monitor = self.dynamic.monitor if self.dynamic is not None else None
            self._workers = workers.WorkerPool(shares, self.responder, self.stats, monitor)
            self._workers.start()

    def set_zones(self, zones: ZoneSet) -> None:
        """Answer from ``zones`` from now on (the workers: once ``refresh_workers`` forked new ones)."""
        with self._swap:
            self.responder.set_zones(zones)

    def set_challenges(self, live: ChallengeSet) -> None:
        """Answer with the ACME challenges ``live``, here and in every worker, before returning."""
        with self._swap:
            self.responder.set_challenges(live)
            if self._workers is not None:
                self._workers.push_challenges(live)

    def refresh_workers(self) -> None:
        """After a zone reload: workers forked before it hold the old data."""
        if self._workers is not None:
            self._workers.restart()

    def total_stats(self) -> Stats:
        """Every answer counted, the workers' too; never less than an earlier call returned."""
        with self._totals:
            return workers.total(self.stats, self._workers)

    def absorb(self, final: dict[str, dict[str, int]]) -> None:
        """Add a previous daemon's final counters, atomically for whoever reads totals."""
        with self._totals:
            self.stats.absorb(final)

    def worker_pids(self) -> list[int]:
        pool = self._workers
        return pool.pids() if pool is not None else []

    def stop(self) -> None:
        """Stop reading, answer what TCP clients already sent; the sockets stay open.

        Workers stop too, and their counts join ``stats``.
        """
        servers = [server for server in (self._udp, self._tcp) if server is not None]
        # Every kind and process winds down at once: TCP's final answers need not wait for UDP.
        for server in servers:
            server.request_stop()
        pool = self._workers
        if pool is not None:
            pool.close()  # totals meanwhile: the pool reports its retired workers' counts
            with self._totals:
                self.stats.absorb(pool.retired.snapshot())
                self._workers = None
        for server in servers:
            server.stop()
        self._udp = self._tcp = None

    def close_sockets(self) -> None:
        for listener in self.sockets:
            listener.sock.close()
        self.sockets = []
