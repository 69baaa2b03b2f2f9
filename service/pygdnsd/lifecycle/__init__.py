"""Process lifecycle: daemonizing, pidfile, socket takeover, sd_notify."""
