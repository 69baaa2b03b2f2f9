"""systemd.notify against a real systemd 252: ExecReload hands the unit to a new process.

The unit's ExecStart is a tiny daemon using ``systemd.notify``; ExecReload
double-forks a new instance that claims the unit with ``ready_as_main`` (MAINPID
and READY=1 together, then a barrier), signals the old one to exit, and reports
back to the helper through a pipe. This is the hand-off the real daemon makes,
without the DNS parts.
"""

from __future__ import annotations

import pytest

from container.systemd_container import CONTAINER_REPO, SystemdContainer
from daemon_support import wait_for

pytestmark = [pytest.mark.container, pytest.mark.timeout(600)]

SCRIPT_PATH = "/usr/local/lib/handoff/daemon.py"
UNIT_NAME = "handoff-test.service"
IDENTIFIER = "handoff-test"

SCRIPT = """\
import logging, os, select, signal, sys, time

from pygdnsd.systemd import journal, notify

log = logging.getLogger("handoff")
handler = journal.journal_handler("handoff-test")
assert handler is not None and journal.journal_wanted()
log.addHandler(handler)
log.setLevel(logging.INFO)


def serve(generation):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # exits WITHOUT STOPPING=1
    notify.status(f"generation {generation} pid {os.getpid()}")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(0.5)


def new_instance(old_pid, report_fd, generation):
    ok = notify.ready_as_main(os.getpid(), timeout=10)
    log.info("took over from %d", old_pid,
             extra={"GDNSD_EVENT": "handoff-done", "GDNSD_OLD_PID": old_pid, "GDNSD_NEW_PID": os.getpid()})
    os.kill(old_pid, signal.SIGTERM)
    os.write(report_fd, b"ok" if ok else b"no")
    os.close(report_fd)
    serve(generation)


def reload_helper():
    old_pid = int(os.environ["MAINPID"])
    generation = int(open(f"/proc/{old_pid}/cmdline", "rb").read().split(b"\\0")[3] or 1) + 1
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:  # the grandchild: re-parented to PID 1, never "alien"
            os.close(read_end)
            os.set_inheritable(write_end, True)
            os.execv(sys.executable, [sys.executable, __file__, "new", str(generation), str(old_pid), str(write_end)])
        os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    ready, _, _ = select.select([read_end], [], [], 20)
    verdict = os.read(read_end, 16) if ready else b"timeout"
    print("helper: new instance says", verdict.decode(), flush=True)
    sys.exit(0 if verdict == b"ok" else 1)


mode = sys.argv[1]
if mode == "start":
    notify.ready()
    log.info("started", extra={"GDNSD_EVENT": "start"})
    serve(1)
elif mode == "reload":
    reload_helper()
elif mode == "new":
    generation, old_pid, fd = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    os.set_inheritable(fd, False)
    new_instance(old_pid, fd, generation)
"""

UNIT = f"""\
[Service]
Type=notify
NotifyAccess=all
ExecStart=/usr/bin/python3 {SCRIPT_PATH} start 1
ExecReload=/usr/bin/python3 {SCRIPT_PATH} reload
Environment=PYTHONPATH={CONTAINER_REPO}/service PYTHONDONTWRITEBYTECODE=1
TimeoutStartSec=30
TimeoutStopSec=5
"""


def show(container: SystemdContainer, *props: str) -> dict[str, str]:
    return container.unit_properties(UNIT_NAME, *props)


def alive(container: SystemdContainer, pid: str) -> bool:
    return container.run(["kill", "-0", pid]).returncode == 0


def test_reload_moves_mainpid_to_a_new_process(systemd_container: SystemdContainer) -> None:
    container = systemd_container
    container.write_file(SCRIPT_PATH, SCRIPT)
    container.write_file(f"/etc/systemd/system/{UNIT_NAME}", UNIT)
    container.run(["systemctl", "daemon-reload"], check=True)
    container.run(["systemctl", "start", UNIT_NAME], check=True)
    state = show(container, "ActiveState", "MainPID", "StatusText")
    assert state["ActiveState"] == "active"
    pids = [state["MainPID"]]
    assert state["StatusText"] == f"generation 1 pid {pids[0]}"

    for generation in (2, 3):
        reloaded = container.run(["systemctl", "reload", UNIT_NAME], timeout=60)
        assert reloaded.returncode == 0, reloaded.stderr + container.journal("-n", "40")
        state = show(container, "ActiveState", "SubState", "MainPID", "StatusText", "ReloadResult")
        assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
        assert state["ReloadResult"] == "success"
        new_pid = state["MainPID"]
        assert new_pid not in pids
        assert alive(container, new_pid)
        args = container.run(["ps", "-o", "args=", "-p", new_pid], check=True).stdout
        assert args.startswith(f"/usr/bin/python3 {SCRIPT_PATH} new {generation} {pids[-1]}")
        # The old instance exited and systemd did not take the unit down with it.
        assert wait_for(lambda: not alive(container, pids[-1]), 10.0)
        assert state["StatusText"] == f"generation {generation} pid {new_pid}"
        pids.append(new_pid)

    entries = container.journal("-t", IDENTIFIER, "GDNSD_EVENT=handoff-done", "-o", "verbose")
    assert entries.count("GDNSD_EVENT=handoff-done") == 2
    assert f"GDNSD_OLD_PID={pids[1]}" in entries and f"GDNSD_NEW_PID={pids[2]}" in entries
    assert "PRIORITY=6" in entries
    # A real stop still works on the last generation, and ends it.
    container.run(["systemctl", "stop", UNIT_NAME], check=True, timeout=30)
    assert show(container, "ActiveState")["ActiveState"] == "inactive"
    assert not alive(container, pids[-1])
