"""Good zones: what the loader builds, and that it matches what gdnsd 3.8.1 serves."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import dnslib
import pytest

from pygdnsd.zones import model, names
from pygdnsd.zones.loader import ZoneSettings, load_zones

GOOD = Path(__file__).resolve().parent / "data" / "zones" / "good"
REAL_GDNSD = Path("/usr/sbin/gdnsd")


def n(text: str) -> bytes:
    return names.from_text(text)


@pytest.fixture(scope="module")
def zones() -> model.ZoneSet:
    return load_zones(GOOD, ZoneSettings())


@pytest.fixture(scope="module")
def zone(zones: model.ZoneSet) -> model.Zone:
    return zones.zones[n("example.com.")]


def packed(rdata: object) -> bytes:
    """dnslib's rdata encoding, names uncompressed."""
    buf = dnslib.DNSBuffer()
    buf.encode_name = buf.encode_name_nocompress  # type: ignore[method-assign]
    rdata.pack(buf)  # type: ignore[attr-defined]
    return bytes(buf.data)


def wire(rtype: str, text: str) -> bytes:
    """dnslib's uncompressed rdata for a presentation-format record."""
    return packed(dnslib.RR.fromZone(f"x. 60 IN {rtype} {text}")[0].rdata)


def test_zone_names_from_files(zones: model.ZoneSet) -> None:
    assert set(zones.zones) == {n("example.com."), n("0/25.2.0.192.in-addr.arpa.")}


def test_rdata_matches_dnslib(zone: model.Zone) -> None:
    nodes = zone.nodes
    assert nodes[n("ns2.example.com.")][model.AAAA].rdatas == (wire("AAAA", "2001:db8::2"),)
    assert nodes[n("example.com.")][model.MX].rdatas == (wire("MX", "10 mail.example.com."),)
    assert nodes[n("_sip._udp.example.com.")][model.SRV].rdatas == (wire("SRV", "5 500 5060 sip.example.net."),)
    assert nodes[n("example.com.")][model.TXT].rdatas == (wire("TXT", '"v=spf1 -all" "two" "abc def"'),)
    assert nodes[n("naptr.example.com.")][model.NAPTR].rdatas == (
        wire("NAPTR", '100 10 "u" "E2U+sip" "!^.*$!sip:info@example.com!" .'),
    )
    assert nodes[n("example.com.")][model.CAA].rdatas == (wire("CAA", '0 issue "letsencrypt.org"'),)
    assert nodes[n("rev.example.com.")][model.PTR].rdatas == (wire("PTR", "host.example.net."),)
    # Names in rdata are lowercased, as gdnsd does.
    assert nodes[n("alias.example.com.")][model.CNAME].rdatas == (n("mail.example.com."),)
    assert nodes[n("t99.example.com.")][99].rdatas == (b"\x05v=spf",)
    assert nodes[n("escaped.example.com.")][model.TXT].rdatas == (b'\x0fquote"semi;decA',)


def test_soa_rules(zone: model.Zone) -> None:
    # MINIMUM 2d is clamped to max_ncache_ttl, in the rdata too; the SOA TTL drops to it.
    expected = wire("SOA", "ns1.example.com. hostmaster.example.com. 2024010101 7200 1800 1814400 10800")
    assert zone.soa == model.RRset(model.SOA, 10800, (expected,))
    assert zone.nodes[zone.apex][model.SOA] is zone.soa
    assert zone.serial == 2024010101


def test_ttls(zone: model.Zone) -> None:
    nodes = zone.nodes
    assert nodes[n("example.com.")][model.NS].ttl == 3600  # $TTL 1h
    assert nodes[n("example.com.")][model.MX].ttl == 7200
    assert nodes[n("ns2.example.com.")][model.A].ttl == 600  # class before TTL
    assert nodes[n("x.y.z.example.com.")][model.A].ttl == 5  # min_ttl
    assert nodes[n("big.example.com.")][model.A].ttl == 3600000  # max_ttl
    assert nodes[n("_acme-challenge.example.com.")][model.TXT].ttl == 0
    assert nodes[n("ttlmix.example.com.")][model.A].ttl == 300  # the first record's
    # $TTL inside an included file applies there only.
    assert nodes[n("d.f.p.example.com.")][model.A].ttl == 77
    assert nodes[n("c.p.example.com.")][model.A].ttl == 3600


def test_origins_and_includes(zone: model.Zone) -> None:
    for name in ("a.o", "b.p", "c.p", "d.f.p", "e.g.f.p", "f.h.f.p", "g.i"):
        assert model.A in zone.nodes[n(name + ".example.com.")], name


def test_tree_shape(zone: model.Zone) -> None:
    nodes = zone.nodes
    for ent in ("z", "y.z", "_udp", "o", "p", "f.p", "i"):
        assert nodes[n(ent + ".example.com.")] == {}, ent
    assert zone.cuts == frozenset({n("sub.example.com."), n("other.example.com.")})
    assert nodes[n("mail.example.com.")][model.A].rdatas == (b"\xc0\x00\x02\x03",) * 2  # duplicates kept
    assert len(nodes[n("long.example.com.")][model.TXT].rdatas[0]) == 300 + 2  # split 255 + 45
    assert nodes[n("ns.sub.example.com.")][model.A].rdatas == (b"\xc0\x00\x02\x09",)
    assert nodes[n("unused.sub.example.com.")] == {}  # unused glue dropped
    assert model.A in nodes[n("ns.example.net.")]  # used out-of-zone glue kept
    assert model.A in nodes[n("wild.*.example.com.")]


def test_warnings_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pygdnsd.zones"):
        load_zones(GOOD, ZoneSettings())
    text = caplog.text
    assert "example.com:23: name 'big.example.com.': TTL 99999999 too large" in text
    assert "unused.sub.example.com.' are unused and ignored" in text


def test_settings_change_ttls() -> None:
    settings = ZoneSettings(default_ttl=1234, min_ttl=0, max_ttl=7200, max_ncache_ttl=86400, acme_challenge_dns_ttl=60)
    zone = load_zones(GOOD, settings).zones[n("example.com.")]
    assert zone.nodes[n("x.y.z.example.com.")][model.A].ttl == 0
    assert zone.nodes[n("big.example.com.")][model.A].ttl == 7200
    assert zone.nodes[n("_acme-challenge.example.com.")][model.TXT].ttl == 60
    # MINIMUM 2d clamps to 86400; the SOA TTL 1D clamps to max_ttl first.
    assert zone.soa.ttl == 7200
    assert zone.soa.rdatas[0][-4:] == (86400).to_bytes(4, "big")


def test_zones_dir_rules(tmp_path: Path) -> None:
    zones_dir = tmp_path / "zones"
    shutil.copytree(GOOD, zones_dir)
    (zones_dir / "example.org").symlink_to("example.com")  # symlinks alias zones
    (zones_dir / ".hidden").write_text("not a zone")
    loaded = load_zones(zones_dir, ZoneSettings())
    assert n("example.org.") in loaded.zones
    assert len(loaded.zones) == 3


@pytest.mark.skipif(not REAL_GDNSD.exists(), reason="reference gdnsd 3.8.1 not installed")
def test_gdnsd_accepts_good_zones(tmp_path: Path) -> None:
    config = tmp_path / "gdnsd"
    shutil.copytree(GOOD, config / "zones")
    (config / "config").write_text(
        f"options => {{ listen => [127.0.0.1], run_dir => {tmp_path}/run, state_dir => {tmp_path}/state }}\n"
    )
    result = subprocess.run(
        [str(REAL_GDNSD), "-c", str(config), "checkconf"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def ask(port: int, qname: str, qtype: str) -> dnslib.DNSRecord:
    query = dnslib.DNSRecord.question(qname, qtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(query.pack(), ("127.0.0.1", port))
        data, _ = sock.recvfrom(65535)
    return dnslib.DNSRecord.parse(data)


SERVED = [
    ("example.com.", "SOA"), ("example.com.", "NS"), ("example.com.", "MX"), ("example.com.", "TXT"),
    ("example.com.", "CAA"), ("ns2.example.com.", "A"), ("ns2.example.com.", "AAAA"),
    ("mail.example.com.", "A"), ("long.example.com.", "TXT"), ("_sip._udp.example.com.", "SRV"),
    ("naptr.example.com.", "NAPTR"), ("x.y.z.example.com.", "A"), ("big.example.com.", "A"),
    ("rev.example.com.", "PTR"), ("alias.example.com.", "CNAME"), ("t99.example.com.", "TYPE99"),
    ("escaped.example.com.", "TXT"), ("_acme-challenge.example.com.", "TXT"), ("ttlmix.example.com.", "A"),
    ("d.f.p.example.com.", "A"), ("g.i.example.com.", "A"), ("1.0/25.2.0.192.in-addr.arpa.", "PTR"),
    ("0/25.2.0.192.in-addr.arpa.", "SOA"),
]


@pytest.mark.skipif(not REAL_GDNSD.exists(), reason="reference gdnsd 3.8.1 not installed")
def test_gdnsd_serves_what_we_loaded(
    tmp_path: Path, zones: model.ZoneSet, server_factory: Callable[[str, Path], object]
) -> None:
    source = tmp_path / "source"
    shutil.copytree(GOOD, source / "zones")
    (source / "config").write_text(
        "options => { listen => [127.0.0.1], dns_port => @PORT@, run_dir => @RUN_DIR@, state_dir => @STATE_DIR@ }\n"
    )
    server = server_factory("gdnsd", source)
    port = server.port  # type: ignore[attr-defined]
    for qname, qtype in SERVED:
        owner = n(qname)
        zone = zones.find_zone(owner)
        assert zone is not None
        rtype = dnslib.QTYPE.reverse.get(qtype) if not qtype.startswith("TYPE") else int(qtype[4:])
        ours = zone.nodes[owner][rtype]
        reply = ask(port, qname, qtype)
        answers = [rr for rr in reply.rr if rr.rtype == rtype]
        assert answers, (qname, qtype)
        assert {rr.ttl for rr in answers} == {ours.ttl}, (qname, qtype)
        theirs = [packed(rr.rdata) for rr in answers]
        # gdnsd rotates address RRsets, so compare as sorted lists (duplicates count).
        assert sorted(theirs) == sorted(ours.rdatas), (qname, qtype)


def test_a_name_with_one_rrset_is_stored_as_that_rrset() -> None:
    zone = load_zones(GOOD, ZoneSettings()).zones[n("example.com.")]
    node = zone.nodes[n("alias.example.com.")]
    assert isinstance(node, model.RRset)
    cname = node[model.CNAME]
    assert cname is node and node.get(model.CNAME) is node
    assert node.get(model.A) is None and model.A not in node and model.CNAME in node
    assert list(node) == [model.CNAME] and len(node) == 1
    assert dict(node.items()) == {model.CNAME: node}
    with pytest.raises(KeyError):
        node[model.A]
    # Names with more types keep a dict; empty non-terminals an empty one.
    assert isinstance(zone.nodes[n("example.com.")], dict)
    assert model.node_of({}) == {}
