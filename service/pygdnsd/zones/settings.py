"""The config options that change how zone data loads (see ``man gdnsd.config``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ZoneSettings:
    """Zone loading rules; defaults are gdnsd's.

    ``strict_data`` is ``zones_strict_data`` (or ``-S``): warnings that gdnsd
    upgrades become errors. ``text_autosplit`` is ``not disable_text_autosplit``.
    ``threads`` is ``zones_rfc1035_threads``: how many processes read zone
    files at once (this one included).
    """

    default_ttl: int = 86400
    min_ttl: int = 5
    max_ttl: int = 3600000
    max_ncache_ttl: int = 10800
    strict_data: bool = False
    text_autosplit: bool = True
    acme_challenge_dns_ttl: int = 0
    threads: int = 2
