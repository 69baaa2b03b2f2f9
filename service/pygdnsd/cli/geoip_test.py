"""``gdnsd_geoip_test [-c CFGDIR] [MAP ADDR]``: which datacenters a geoip map gives an address.

gdnsd_geoip_test(1) of gdnsd 3.8.1, same arguments, output and messages:
``MAP => ADDR/SCOPE => dc1, dc2`` on stdout (the address as glibc's
inet_ntop writes it), log lines on stderr. With no MAP ADDR it reads
``MAP ADDR`` lines from stdin until EOF. It reads only the geoip plugin's
``maps`` from the config and builds them as the daemon does.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from pygdnsd import log as gdnsd_log
from pygdnsd.config.options import CONFIG_FILE
from pygdnsd.config.vscf import ConfigHash, parse_file
from pygdnsd.errors import ConfigError
from pygdnsd.plugins.geoip.config import MapSpec, read_map
from pygdnsd.plugins.geoip.tables import MapDataError, MapTable, load_table

DEFAULT_CFGDIR = Path("/etc/gdnsd")
EXIT_FATAL = 42  # gdnsd's exit status after a fatal log line
USAGE = """
Usage: gdnsd_geoip_test [-c /etc/gdnsd] [map_name addr]
  -c\t\tgdnsd config dir, see main gdnsd(8) manpage for details
  map_name\tMapping name from geoip plugin config
  addr\t\tClient IP address to map.

"""

log = logging.getLogger("gdnsd")


class Fatal(Exception):
    pass


def inet_ntop_text(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """glibc's inet_ntop text: IPv6 with an IPv4 tail for ::a.b.c.d and ::ffff:a.b.c.d."""
    if ip.version == 4:
        return str(ip)
    words = [int.from_bytes(ip.packed[i : i + 2], "big") for i in range(0, 16, 2)]
    tail = ipaddress.IPv4Address(ip.packed[12:])
    zero_run = 0
    while zero_run < 8 and words[zero_run] == 0:
        zero_run += 1
    longest_elsewhere = _longest_zero_run(words[zero_run:]) if zero_run < 8 else 0
    if longest_elsewhere <= zero_run and (
        zero_run == 6 or (zero_run == 5 and words[5] == 0xFFFF)
    ):
        return ("::" if zero_run == 6 else "::ffff:") + str(tail)
    return str(ip)


def _longest_zero_run(words: Sequence[int]) -> int:
    best = run = 0
    for word in words:
        run = run + 1 if word == 0 else 0
        best = max(best, run)
    return best


def load_maps(cfgdir: Path) -> dict[str, tuple[MapSpec, MapTable]]:
    path = cfgdir / CONFIG_FILE
    if not path.exists():
        log.warning("No config file at '%s', using defaults", path)
        raise Fatal("gdnsd_geoip_test cannot proceed without an actual config file")
    top = parse_file(path)
    plugins = top.get("plugins") if isinstance(top, ConfigHash) else None
    geoip = plugins.get("geoip") if isinstance(plugins, ConfigHash) else None
    maps = geoip.get("maps") if isinstance(geoip, ConfigHash) else None
    if not isinstance(maps, ConfigHash):
        raise Fatal(f"{path}: plugin geoip: config has no 'maps' stanza")
    out = {}
    for name, conf in maps.items():
        spec = read_map(name, conf, str(maps.key_pos.get(name, maps.pos)), cfgdir)
        out[name] = (spec, load_table(spec))
    return out


def answer(maps: dict[str, tuple[MapSpec, MapTable]], name: str, text: str, out: TextIO) -> None:
    found = maps.get(name)
    if found is None:
        log.error("Mapping name '%s' not found in configuration", name)
        return
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        log.error("Could not parse address '%s': Name or service not known", text)
        return
    spec, table = found
    value, scope = table.lookup(ip.packed)
    if spec.ignore_ecs:
        scope = 0  # such a map's answers are the same for every client of a resolver
    names = ", ".join(spec.datacenters[i] for i in table.dclists[value])
    out.write(f"{name} => {inet_ntop_text(ip)}/{scope} => {names}\n")
    out.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    cfgdir = DEFAULT_CFGDIR
    if len(args) >= 2 and args[0] == "-c":
        cfgdir = Path(args[1])
        args = args[2:]
    if len(args) not in (0, 2) or any(a.startswith("-") and len(a) > 1 for a in args[:1]):
        sys.stderr.write(USAGE)
        return 1
    gdnsd_log.setup("stderr", debug=True)
    log.debug("Loading configuration from '%s'", cfgdir / CONFIG_FILE)
    try:
        maps = load_maps(cfgdir)
    except (Fatal, ConfigError, MapDataError) as exc:
        log.critical("%s", exc)
        return EXIT_FATAL
    if args:
        answer(maps, args[0], args[1], sys.stdout)
        return 0
    for line in sys.stdin:
        words = line.split()
        if len(words) < 2:  # words past the second are ignored, as gdnsd does
            log.error("Invalid input.  Please enter a map name followed by an IP address")
            continue
        answer(maps, words[0], words[1], sys.stdout)
    return 0
