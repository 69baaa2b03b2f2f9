"""A real systemd 252 as PID 1 in a systemd-nspawn container, for tests that need one.

The overlapped replace is a contract with systemd (Type=notify, MAINPID hand-over,
ExecReload as control process), so it is tested against the real thing. Usage::

    from container.systemd_container import SystemdContainer
    from container.rootfs import ensure_rootfs

    with SystemdContainer(ensure_rootfs()) as c:
        c.run(["systemctl", "start", "x.service"], check=True)

Or use the ``systemd_container`` fixture from ``tests/container/conftest.py``
(tests under ``tests/container/`` get it automatically). Needs root; see
``host_tools.require_root``.
"""
