"""A replace starts here: a new daemon takes over from a running one without dropping a query.

Who starts it:

* ``gdnsd replace`` (or ``restart``; ``cli.gdnsd.replace``) runs ``gdnsd -R``
  detached and waits for its verdict; under systemd it asks for ReloadUnit
  instead, and the unit's ExecReload does the same (``systemd.unit_verbs``);
* ``gdnsdctl replace`` (REQ_REPL) makes the old daemon itself run
  ``gdnsd -R start``, as gdnsd does, with whatever ``gdnsd`` is installed
  where it was started from (``spawn``).

The old and the new daemon may each be gdnsd 3.8.1 or pygdnsd: pygdnsd
speaks gdnsd 3.8.1's takeover to the byte, so either replaces the other
(``takeover`` says what two pygdnsd daemons add, and how they know each other).

The new daemon (``new_daemon.take_over``, called by ``daemon.daemon.run``)
loads config and zones first, while the old daemon serves on, then speaks to
the old one's control socket on ONE connection, with its PID in ``d`` of
every takeover request (``takeover.TakeoverClient`` on the new side,
``old_daemon.serve_takeover`` on the old):

1. REQ_INFO            -> ACK (version, old PID): a health check; a version
                          other than 3.x ends the replace here.
2. REQ_TAK1 (pid)      -> ACK; the old daemon is now locked onto this PID and
                          answers other state-changing clients RESP_LATR
                          (that part is the control server's).  LATR/FAIL: refused.
3. REQ_TAK2 (pid)      -> ACK (v: batches, d: bytes) + the live ACME challenges,
                          each batch with its whole seconds left (gdnsd's
                          layout: ``protocol.encode_challenge_handoff``);
                          from then on the old daemon answers challenge
                          changes RESP_LATR (``daemon.challenges``), and
                          the new daemon serves them for what they have left.
4. REQ_TAKE (pid)      -> the old daemon stops accepting control connections
                          and sends ACK (v: fd count) with the descriptors as
                          SCM_RIGHTS (``fd_passing``): the instance lock, the
                          control listener, every DNS socket (and to a pygdnsd
                          peer its tcp_control and http_listen listeners). The
                          new daemon finds out what each socket is from the
                          socket itself, refuses anything else, keeps the sockets its
                          config still wants and binds the rest
                          (``socket_plan``), then serves on them and claims the
                          unit with MAINPID+READY and a barrier under systemd,
                          or rewrites the pidfile otherwise.
5. REQ_STOP            -> ACK; the old daemon stops reading its DNS sockets,
                          answers what it already read, then pushes PSH_SHAND
                          (its final counters in gdnsd's order and the start
                          time, ``stats_handoff``) and exits: EOF.

If the new daemon vanishes or stalls at any step before STOP, the old one
resumes accepting control connections and carries on. If the old daemon does
not answer at all, the new one binds its own sockets beside the old ones and
stops it by signal (``new_daemon.Overlap``).
"""
