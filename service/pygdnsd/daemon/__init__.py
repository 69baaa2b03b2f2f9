"""The daemon's own life: start in steps, serve, shut down (``daemon``); detach
(``daemonize``); the instance lock, the pidfile, the privilege drop; the
initscript verbs that talk to a running daemon (``initscript_verbs``);
keeping the garbage collector off loaded zones (``gc_freeze``)."""
