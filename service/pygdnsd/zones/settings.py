"""The config options that change how zone data loads (see ``man gdnsd.config``)."""

from __future__ import annotations

from dataclasses import dataclass

from pygdnsd.config.options import Config


@dataclass(frozen=True, slots=True)
class ZoneSettings:
    """Zone loading rules; ``from_config`` reads them from a config, the defaults are its defaults.

    ``strict_data`` is ``zones_strict_data`` (or ``-S``): warnings that gdnsd
    upgrades become errors. ``text_autosplit`` is ``not disable_text_autosplit``.
    ``threads`` is ``zones_rfc1035_threads``: how many processes read zone
    files at once (this one included).
    """

    default_ttl: int = Config.zones_default_ttl
    min_ttl: int = Config.min_ttl
    max_ttl: int = Config.max_ttl
    max_ncache_ttl: int = Config.max_ncache_ttl
    strict_data: bool = Config.zones_strict_data
    text_autosplit: bool = not Config.disable_text_autosplit
    acme_challenge_dns_ttl: int = Config.acme_challenge_dns_ttl
    threads: int = Config.zones_rfc1035_threads

    @classmethod
    def from_config(cls, config: Config) -> ZoneSettings:
        return cls(
            default_ttl=config.zones_default_ttl,
            min_ttl=config.min_ttl,
            max_ttl=config.max_ttl,
            max_ncache_ttl=config.max_ncache_ttl,
            strict_data=config.zones_strict_data,
            text_autosplit=not config.disable_text_autosplit,
            acme_challenge_dns_ttl=config.acme_challenge_dns_ttl,
            threads=config.zones_rfc1035_threads,
        )
