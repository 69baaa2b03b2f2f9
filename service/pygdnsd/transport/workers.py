"""Worker processes, so that udp_threads/tcp_threads use more than one core.

Python threads share one interpreter lock: two UDP threads answer no faster
than one. So with N = the largest udp_threads/tcp_threads of any listen
address above 1, the instance serves the sockets of SO_REUSEPORT index 0
with its own threads and forks N-1 workers; worker k serves the sockets of
index k (every address's UDP and TCP socket #k) with the same transports.
This module is the instance's side; ``worker_process`` is the worker's.

Why this shape:

* The instance opens and owns every socket; workers use inherited copies.
  A replace hands over the instance's descriptors exactly as before, and the
  kernel keeps each socket's queue for whoever reads it next.
* Workers get the Responder by fork (zone data shared copy-on-write; it is
  frozen out of the cyclic collector first, see ``daemon.gc_freeze``). Data they cannot
  be sent is never changed in them: a zone reload stops every worker and
  forks new ones from the instance, which holds the new data by then. Stop
  before fork keeps the switch atomic: once the reload is acknowledged no
  worker answers from the old data, and datagrams that arrive meanwhile
  wait in the sockets.
* Monitored states are small and change often: the instance pushes each new
  snapshot to every worker over its pipe (``Monitor.adopt`` there), so
  DYNA/DYNC answers in workers follow within milliseconds.
* Live ACME challenges reach workers the same way, as a whole new
  ``ChallengeSet`` after each change (added, flushed, expired), but the push
  waits for every worker to say it serves it: a CHAL or CHALF is
  acknowledged to its client only then, so no process answers from the old
  set after the ACK (gdnsd's RCU swap promises the same for its threads).
  Why not the reload's way (fork new workers)? Stopping every worker would
  pause their sockets for each certificate's challenge, and a set of
  challenges is small: kilobytes over the pipe. Why not shared memory? The
  answering path would need a lock or a version check on every query;
  with a push, each worker swaps one reference, as a reload does in the
  instance. Expiry is decided in the instance alone (``daemon.challenges``),
  so no worker serves a challenge its instance has let go.
* Counters: each worker counts from zero; the instance asks for them over
  the pipe when it needs totals, and adds a worker's final counts to
  ``retired`` when it exits.
* A worker stops like the instance does (stop reading, answer what TCP
  clients sent, exit) when told over its pipe or by SIGTERM/SIGINT; it also
  stops on EOF from the pipe and by PR_SET_PDEATHSIG when the instance dies,
  so a killed daemon never leaves a worker serving its sockets.
* Every fork runs on the pool's own thread (PR_SET_PDEATHSIG follows the
  forking *thread*), with every logging handler's lock held so that no
  other thread is halfway through writing a log line; the child starts only
  the threads it needs and closes every descriptor of the instance it does
  not serve (lock, pidfile, control connections, the startup report pipe,
  other shares), so none stays open after the instance exits.
* A worker that dies unexpectedly is logged and replaced after a delay that
  doubles while it keeps dying, so a crashing worker cannot fork-bomb.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, NoReturn

from pygdnsd.engine.challenges import ChallengeSet
from pygdnsd.engine.stats import Stats
from pygdnsd.monitoring.monitor import Monitor
from pygdnsd.transport.answerer import ChallengeAnswerer
from pygdnsd.transport.worker_process import (
    CHALLENGES,
    FINAL,
    READY,
    STATS,
    STOP,
    Counts,
    Share,
    become_worker,
    split,
    states_message,
)

REPLY_SECONDS = 2.0  # a live worker answers a stats request in microseconds
STOP_SECONDS = 15.0  # each serving thread gets 5 s to stop; then the worker is killed
WATCH_SECONDS = 0.2  # how soon a dead worker is noticed
READY_SECONDS = 10.0  # a forked worker starts its threads in milliseconds, unless the machine is swamped
RESPAWN_FIRST = 1.0
RESPAWN_MAX = 60.0

log = logging.getLogger("gdnsd")
def _all_handlers() -> list[logging.Handler]:
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [x for x in list(logging.Logger.manager.loggerDict.values()) if isinstance(x, logging.Logger)]
    seen: dict[int, logging.Handler] = {}
    for logger in loggers:
        for handler in logger.handlers:
            seen.setdefault(id(handler), handler)
    return list(seen.values())


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """Hold every handler's lock: no thread is halfway through a log line at fork time.

    The child gets fresh handler locks from logging's own at-fork hook; the
    parent releases what it took.
    """
    handlers = _all_handlers()
    for handler in handlers:
        handler.acquire()
    parent = os.getpid()
    try:
        yield
    finally:
        if os.getpid() == parent:
            for handler in reversed(handlers):
                handler.release()


def describe_exit(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


@dataclass
class _Worker:
    """The instance's handle on one worker process."""

    number: int
    pid: int
    conn: Connection
    last: Counts | None = None  # its counts when last asked: all we have if it dies


@dataclass
class _Respawn:
    delay: float = RESPAWN_FIRST
    due: float = 0.0
    last_death: float = field(default_factory=lambda: -RESPAWN_MAX)


class WorkerPool:
    """The worker processes of one instance, run from a thread of their own.

    ``start`` forks them, ``restart`` replaces them (after a zone reload),
    ``close`` stops them; ``counts`` and the monitor subscription talk to
    them. One lock (``_talk``) orders every conversation with the workers
    and every fork, so a states push can never miss a newly forked worker.
    """

    def __init__(
        self,
        shares: Sequence[Share],
        responder: ChallengeAnswerer,
        stats: Stats,
        monitor: Monitor | None,
    ) -> None:
        self.shares = {share.number: share for share in shares if share.number > 0}
        self.responder = responder
        self.stats = stats
        self.monitor = monitor
        self.retired = Stats()  # the counts of workers that are gone
        self._pid = os.getpid()
        self._workers: dict[int, _Worker] = {}
        self._respawn: dict[int, _Respawn] = {}
        self._talk = threading.Lock()
        self._active = False
        self._commands: queue.SimpleQueue[tuple[str, threading.Event]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        if monitor is not None:
            monitor.subscribe(self._push_states)

    # --- the instance's side ------------------------------------------------

    def start(self) -> None:
        """Fork every worker; returns once they exist."""
        self._thread = threading.Thread(target=self._run, name="workers", daemon=True)
        self._thread.start()
        self._command("start")

    def restart(self) -> None:
        """Stop every worker, then fork new ones from what the instance holds now."""
        self._command("restart")

    def close(self) -> None:
        """Stop every worker (their final counts go to ``retired``) and the pool's thread."""
        if self._thread is None:
            return
        self._command("close")
        self._thread.join(STOP_SECONDS)
        self._thread = None

    def counts(self) -> list[Counts]:
        """The counts of every worker, live and gone (each once, even across an exit)."""
        with self._talk:
            out = []
            for worker in list(self._workers.values()):
                counts = self._ask_counts(worker)
                if counts is not None:
                    out.append(counts)
            # Last: a worker found exiting meanwhile was just retired, not counted above.
            return [*out, self.retired.snapshot()]

    def pids(self) -> list[int]:
        """The live workers' PIDs."""
        return [worker.pid for worker in list(self._workers.values())]

    def _command(self, kind: str) -> None:
        done = threading.Event()
        self._commands.put((kind, done))
        while not done.wait(1.0):
            thread = self._thread
            if thread is None or not thread.is_alive():
                return

    def _ask_counts(self, worker: _Worker) -> Counts | None:
        try:
            worker.conn.send((STATS,))
        except OSError:
            return worker.last  # dying: the watcher retires it with its last counts
        reply = self._reply(worker, STATS, "report its counts")
        if reply is not None:
            counts: Counts = reply[1]
            worker.last = counts
            return counts
        return worker.last

    def _reply(self, worker: _Worker, kind: str, what: str) -> tuple[Any, ...] | None:
        """The worker's answer of ``kind`` (None: it is stopping or dying, or silent past REPLY_SECONDS)."""
        try:
            if worker.conn.poll(REPLY_SECONDS):
                message = worker.conn.recv()
                if message[0] == kind:
                    return message  # type: ignore[no-any-return]
                if message[0] == FINAL:  # it is stopping on its own (a signal)
                    self._retire(worker, message[1])
                    return None
            log.warning("worker %d (PID %d) did not %s in time", worker.number, worker.pid, what)
        except (OSError, EOFError):
            pass  # dying: the watcher retires it
        return None

    def push_challenges(self, live: ChallengeSet) -> None:
        """Make every worker serve ``live``; returns once each said so (or is known gone, or silent).

        The instance's own responder must serve ``live`` already: a worker
        forked meanwhile starts with it.
        """
        if os.getpid() != self._pid:
            return
        with self._talk:
            sent = []
            for worker in list(self._workers.values()):
                try:
                    worker.conn.send((CHALLENGES, live))
                except OSError:
                    continue  # dying: a new one forks from the instance, with ``live``
                sent.append(worker)
            for worker in sent:
                self._reply(worker, CHALLENGES, "take the new ACME challenges")

    def _push_states(self, _changed: frozenset[str]) -> None:
        if os.getpid() != self._pid or self.monitor is None:
            return  # a worker's own monitor: its instance pushes to the others
        with self._talk:
            # The current snapshot, read under the lock: a worker forked since has it already.
            message = states_message(self.monitor.states)
            for worker in self._workers.values():
                with contextlib.suppress(OSError):
                    worker.conn.send(message)

    # --- the pool's thread ----------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                kind, done = self._commands.get(timeout=WATCH_SECONDS)
            except queue.Empty:
                kind, done = "", None
            try:
                if kind in ("restart", "close"):
                    self._stop_all()
                if kind in ("start", "restart"):
                    self._active = True
                    for number in self.shares:
                        self._fork(number)
                self._watch()
            except Exception:
                log.exception("worker pool")
            finally:
                if done is not None:
                    done.set()
            if kind == "close":
                return

    def _fork(self, number: int) -> None:
        share = self.shares[number]
        ours, theirs = socket.socketpair()
        with self._talk:
            gc.freeze()  # whatever is alive now stays out of the child's collections
            try:
                with _quiet_logging():
                    pid = os.fork()
                    if pid == 0:
                        ours.close()
                        self._become_worker(share, theirs)
            except OSError as exc:
                ours.close()
                theirs.close()
                log.error("worker %d: cannot fork: %s", number, exc.strerror)
                self._schedule_respawn(number)
                return
            theirs.close()
            worker = self._workers[number] = _Worker(number, pid, Connection(ours.detach()))
            self._await_ready(worker)
        log.info("worker %d (PID %d) serves %s", number, pid, _describe(share))

    def _await_ready(self, worker: _Worker) -> None:
        """Return once ``worker`` reads its sockets (or is known dead, or after READY_SECONDS).

        ``start`` and ``restart`` return only then, so a replacing instance
        says it is ready, and a reload is acknowledged, only once every share
        is being read: until then the old instance (or nobody, for a moment
        during a reload) reads it, and a share left unread while the machine
        is busy overflows its socket's queue.
        """
        try:
            if worker.conn.poll(READY_SECONDS):
                message = worker.conn.recv()
                if message[0] == READY:
                    return
                if message[0] == FINAL:  # stopped by a signal before it served
                    self._retire(worker, message[1])
                    _reap(worker.pid, time.monotonic() + STOP_SECONDS)
                    return
        except (OSError, EOFError):
            return  # died before it served: the watcher retires it and forks another
        log.warning("worker %d (PID %d) is not serving after %g s", worker.number, worker.pid, READY_SECONDS)

    def _become_worker(self, share: Share, pipe: socket.socket) -> NoReturn:
        status = 1
        try:
            status = become_worker(share, self.responder, self.stats, self.monitor, pipe, self._pid)
        except BaseException:
            log.exception("worker %d (PID %d) failed", share.number, os.getpid())
        finally:
            os._exit(status)

    def _stop_all(self) -> None:
        with self._talk:
            self._active = False
            workers = list(self._workers.values())
            for worker in workers:
                with contextlib.suppress(OSError):
                    worker.conn.send((STOP,))
            deadline = time.monotonic() + STOP_SECONDS
            for worker in workers:
                self._retire(worker, _final_counts(worker.conn, deadline))
                _reap(worker.pid, deadline)
            self._workers.clear()

    def _retire(self, worker: _Worker, final: Counts | None) -> None:
        counts = final if final is not None else worker.last
        if counts is not None:
            self.retired.absorb(counts)
        worker.last = None
        self._workers.pop(worker.number, None)
        worker.conn.close()

    def _watch(self) -> None:
        """Notice dead workers (retire them, plan a new one) and fork those due."""
        now = time.monotonic()
        with self._talk:
            for worker in list(self._workers.values()):
                try:
                    pid, status = os.waitpid(worker.pid, os.WNOHANG)
                except ChildProcessError:
                    pid, status = worker.pid, 0
                if pid == 0:
                    continue
                final = _final_counts(worker.conn, now) if not worker.conn.closed else None
                self._retire(worker, final)
                # Status 0: it stopped on a signal of its own (a Ctrl-C reaching the process group).
                level = logging.INFO if os.waitstatus_to_exitcode(status) == 0 else logging.ERROR
                log.log(
                    level, "worker %d (PID %d) exited unexpectedly (%s)", worker.number, worker.pid, describe_exit(status)
                )
                self._schedule_respawn(worker.number)
        if not self._active:
            return
        for number, respawn in list(self._respawn.items()):
            if number not in self._workers and respawn.due <= now:
                respawn.due = float("inf")  # kept for its delay, should this one die soon too
                self._fork(number)

    def _schedule_respawn(self, number: int) -> None:
        now = time.monotonic()
        respawn = self._respawn.get(number, _Respawn())
        if now - respawn.last_death < RESPAWN_MAX:
            respawn.delay = min(respawn.delay * 2, RESPAWN_MAX)
        else:
            respawn.delay = RESPAWN_FIRST
        respawn.last_death = now
        respawn.due = now + respawn.delay
        self._respawn[number] = respawn
        log.info("worker %d: a new one in %g s", number, respawn.delay)


def _final_counts(conn: Connection, deadline: float) -> Counts | None:
    """Read until the worker's FINAL message (None: EOF or ``deadline`` first)."""
    try:
        while conn.poll(max(0.0, deadline - time.monotonic())):
            message = conn.recv()
            if message[0] == FINAL:
                return message[1]  # type: ignore[no-any-return]
    except (EOFError, OSError):
        pass
    return None


def _reap(pid: int, deadline: float) -> None:
    """Wait for ``pid`` to exit; past ``deadline``, kill it."""
    while True:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        if time.monotonic() >= deadline:
            log.error("worker PID %d did not stop within %g s: killing it", pid, STOP_SECONDS)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            return
        time.sleep(0.005)


def _describe(share: Share) -> str:
    names = [f"UDP {s.spec.label}#{s.spec.index}" for s in share.udp]
    names += [f"TCP {s.spec.label}#{s.spec.index}" for s, _ in share.tcp]
    return ", ".join(names) or "nothing"


def total(stats: Stats, pool: WorkerPool | None) -> Stats:
    """The instance's own counts plus every worker's."""
    out = Stats()
    out.absorb(stats.snapshot())
    if pool is not None:
        for counts in pool.counts():
            out.absorb(counts)
    return out



__all__ = ["Share", "WorkerPool", "split", "total"]
