"""Where pygdnsd speaks to systemd: readiness and the hand-off of the main PID
(``notify``), socket activation (``socket_activation``), the journal
(``journal``), STATUS= and the watchdog (``watchdog``), and the initscript
verbs asked of systemd over D-Bus when it runs the daemon (``unit``,
``unit_verbs``). Without systemd every part here stays out of the way."""
