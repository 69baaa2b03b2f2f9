"""Bad zone data: each case must be rejected by us AND by the real gdnsd 3.8.1.

Every case is a zones directory under ``tests/data/zones/bad/<case>/``. We
load it with ``load_zones`` and check the error names the file, the line and
the problem, however the zone is loaded: by this process alone, by one of
several worker processes, or in pieces read by several; then ``gdnsd
checkconf`` runs on the same directory and must fail too, for the same
reason (a fragment of its message is checked). Every whole-zone rule has a
case (the warnings' as errors under ``zones_strict_data``).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from pygdnsd.errors import ZoneError
from pygdnsd.zones import parallel
from pygdnsd.zones.loader import ZoneSettings, load_zones

BAD = Path(__file__).resolve().parent / "data" / "zones" / "bad"
REAL_GDNSD = Path("/usr/sbin/gdnsd")
DEFAULT = ZoneSettings()


@dataclass(frozen=True)
class Case:
    name: str
    file: str  # path of the file the error names, relative to the zones dir
    line: int | None
    ours: str  # fragment of our message
    theirs: str  # fragment of gdnsd's message
    options: str = ""  # gdnsd config options, mirrored in settings
    settings: ZoneSettings = DEFAULT


STRICT = ZoneSettings(strict_data=True)
EC = "example.com"


def strict(name: str, line: int | None, ours: str, theirs: str) -> Case:
    """A warning's case: an error only under ``zones_strict_data``, in gdnsd as here."""
    return Case(name, EC, line, ours, theirs, "zones_strict_data => true", STRICT)


CASES = [
    Case("no_soa", EC, 1, "has no SOA record", "has no SOA record"),  # its first record's line: gdnsd names none
    Case("two_soa", EC, 6, "SOA defined twice", "SOA defined twice"),
    Case("soa_not_apex", EC, 6, "SOA record can only be defined for the root", "SOA record can only be defined"),
    Case("no_ns", EC, 1, "has no NS records", "has no NS records"),  # the SOA's line: gdnsd names none
    Case("cname_beside_data", EC, 6, "CNAME not allowed alongside other data", "CNAME not allowed alongside"),
    Case("cname_at_apex", EC, 1, "CNAME not allowed alongside other data", "CNAME not allowed alongside"),
    Case("cname_loop", EC, 6, "CNAME chain more than 16 deep", "CNAME chain at least 16 RRs deep"),
    Case("cname_chain_17", EC, 6, "CNAME chain more than 16 deep", "CNAME chain at least 16 RRs deep"),
    Case("data_below_cut", EC, 7, "inside a delegated subzone", "inside a delegated subzone"),
    Case("nested_delegation", EC, 7, "within another delegation", "within another delegation"),
    Case("missing_glue", EC, 6, "missing A and/or AAAA records for target nameserver", "Missing A and/or AAAA"),
    Case("out_of_zone_mx", EC, 6, "not within this zonefile's zone", "is not within this zonefile's zone"),
    Case("origin_outside_zone", EC, 6, "origin 'example.net.' is not within", "is not within this zonefile's zone"),
    Case("bad_ipv4", EC, 6, "IPv4 address '192.0.2' invalid", "IPv4 address '192.0.2' invalid"),
    Case("bad_ipv6", EC, 6, "IPv6 address '2001:db8::1::2' invalid", "IPv6 address"),
    Case("mx_pref_too_large", EC, 6, "MX preference value 65536 too large", "MX preference value 65536 too large"),
    Case("srv_port_too_large", EC, 6, "SRV port value 65536 too large", "SRV port value 65536 too large"),
    Case("rfc3597_native_type", EC, 6, "RFC3597 TYPE1 not allowed", "RFC3597 TYPE1 not allowed"),
    Case("rfc3597_hinfo", EC, 6, "RFC3597 TYPE13 not allowed", "RFC3597 TYPE13 not allowed"),
    Case("rfc3597_meta_type", EC, 6, "RFC3597 TYPE255 not allowed", "RFC3597 TYPE255 not allowed"),
    Case("rfc3597_length_mismatch", EC, 6, "claimed rdata length of 5, but 4 bytes", "claimed rdata length of 5"),
    Case("rfc3597_odd_hex", EC, 6, "hex digits in pairs", "General parse error"),
    # gdnsd 3.8.1 rejects "\# 0" (parse error, or a crash with trailing space).
    Case("rfc3597_empty", EC, 6, "empty rdata", "parse error"),
    Case("spf_type", EC, 6, "unsupported record type 'SPF'", "General parse error"),
    Case("dname_type", EC, 6, "unsupported record type 'DNAME'", "General parse error"),
    Case("ttl_combined_units", EC, 6, "invalid TTL '1h30m'", "General parse error"),
    Case("ttl_seconds_unit", EC, 6, "invalid TTL '30s'", "General parse error"),
    Case("ttl_directive_bad", EC, 6, "invalid TTL '1x'", "General parse error"),
    Case("class_chaos", EC, 6, "class CH not supported", "General parse error"),
    Case("generate_directive", EC, 6, "unsupported directive $GENERATE", "General parse error"),
    Case("addr_limit_directive", EC, 6, "unsupported directive $ADDR_LIMIT_V4", "General parse error"),
    Case("crlf_line", EC, 6, "carriage return", "General parse error"),
    Case("include_missing", EC, 6, "$INCLUDE inc/nonexistent: cannot open", "Cannot open"),
    Case("include_bad_line", "inc/part", 2, "IPv4 address '192.0.2.300' invalid", "IPv4 address '192.0.2.300'"),
    Case("txt_bad_escape", EC, 6, "bad escape sequence", "Text chunk has bad escape sequence"),
    Case("txt_too_long", EC, 6, "text chunk too long (>16000", "Text chunk too long (>16000"),
    Case("txt_no_strings", EC, 6, "TXT record needs at least one string", "General parse error"),
    Case(
        "txt_autosplit_disabled", EC, 6, "text chunk too long (>255", "Text chunk too long (>255",
        "disable_text_autosplit => true", ZoneSettings(text_autosplit=False),
    ),
    Case("caa_flags_too_large", EC, 6, "CAA flags byte value 256 is >255", "CAA flags byte value 256"),
    Case("ns_rrset_too_large", EC, 70, "too many NS records in one NS RRset (65 > 64)", "Too many NS records"),
    Case("label_too_long", EC, 6, "label longer than 63", "unparseable domainname"),
    Case("unclosed_paren", EC, 6, "'(' without a matching ')'", "Unterminated open parentheses"),
    Case("dyna_record", EC, 6, "DYNA/DYNC need the monitoring/plugins support", "rejected resource name"),
    strict("strict_acme_ttl", 6, "ACME challenge TXT record TTL 300 overridden to 0", "ACME challenge TXT"),
    strict("strict_ttl_mismatch", 7, "all TTLs for A records at the same name should agree", "should agree"),
    strict("strict_one_ns", 2, "only has one NS record", "only has one NS record"),
    strict("strict_unused_glue", 8, "glue address(es) at domainname 'www.sub.example.com.' are unused",
           "are unused and ignored"),
    strict("strict_soa_ttl_over_ncache", 1, "SOA TTL 3600 > ncache field 300", "SOA TTL 3600 > ncache field 300"),
    strict("strict_soa_ncache_too_large", 1, "SOA negative-cache field 86400 too large, clamped to max_ncache_ttl",
           "SOA negative-cache field 86400 too large"),
    strict("strict_mname_not_ns", 1, "SOA MNAME does not match any NS records", "SOA MNAME does not match"),
    strict("strict_ptr_same_zone", 6, "PTR record points to same-zone name", "PTR record points to same-zone"),
    strict("strict_out_of_zone_glue", 6, "pointless out of zone glue", "pointless out of zone glue"),
    strict("strict_mx_no_address", 6, "in rrset 'mail.example.com. MX', same-zone target 'nothing.example.com.' "
           "has no addresses", "same-zone target 'nothing.example.com.' has no addresses"),
    strict("strict_srv_no_address", 6, "in rrset '_sip._tcp.example.com. SRV', same-zone target "
           "'nothing.example.com.' has no addresses", "same-zone target 'nothing.example.com.' has no addresses"),
    strict("strict_cname_nxdomain", 6, "CNAME 'www.example.com.' points to known same-zone NXDOMAIN "
           "'nothing.example.com.'", "points to known same-zone NXDOMAIN 'nothing.example.com.'"),
    Case("sub_zone", "sub.example.com", None, "is a sub-zone of zone 'example.com.'", "is a sub-zone"),
    Case("duplicate_zone", "example.com", None, "is a duplicate of an existing zone", "is a duplicate"),
]


def gdnsd_checkconf(zones: Path, options: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run the real gdnsd's checkconf on a copy of ``zones`` (no sockets are opened)."""
    config_dir = tmp / "gdnsd"
    shutil.copytree(zones, config_dir / "zones")
    (config_dir / "config").write_text(
        "options => {\n"
        f"  listen => [127.0.0.1]\n  run_dir => {tmp / 'run'}\n  state_dir => {tmp / 'state'}\n"
        f"  {options}\n}}\n"
    )
    return subprocess.run(
        [str(REAL_GDNSD), "-c", str(config_dir), "checkconf"],
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_cases_cover_every_data_dir() -> None:
    assert sorted(case.name for case in CASES) == sorted(p.name for p in BAD.iterdir())


# How a zone is loaded: this process alone; each zone file whole by one of several
# processes (beside good zones, so there are several to share); or each file in
# pieces read by several processes.
MODES = ("one process", "workers", "pieces")


def _prepared(
    mode: str, zones: Path, settings: ZoneSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, ZoneSettings]:
    """The zones dir and settings that load ``zones`` as ``mode`` says."""
    if mode == "one process":
        return zones, dataclasses.replace(settings, threads=1)
    if mode == "workers":
        monkeypatch.setattr(parallel, "BATCH_BYTES", 1)
        spread = tmp_path / "spread"
        shutil.copytree(zones, spread)
        good = (BAD / "strict_one_ns" / EC).read_text().replace("@ NS ns1\n", "@ NS ns1\n@ NS ns2\n")
        for filler in ("a0.filler.test", "a1.filler.test", "zz.filler.test"):
            (spread / filler).write_text(good)
        zones = spread
    else:
        monkeypatch.setattr(parallel, "SPLIT_BYTES", 1)
    return zones, dataclasses.replace(settings, threads=3)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_bad_zone_rejected(case: Case, mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zones, settings = _prepared(mode, BAD / case.name, case.settings, tmp_path, monkeypatch)
    with pytest.raises(ZoneError) as info:
        load_zones(zones, settings)
    err = info.value
    assert err.path is not None
    assert Path(err.path).resolve() == (zones / case.file).resolve()
    assert err.line == case.line
    assert case.ours in err.problem
    expected_prefix = f"{err.path}:{case.line}: " if case.line is not None else f"{err.path}: "
    assert str(err).startswith(expected_prefix)


@pytest.mark.skipif(not REAL_GDNSD.exists(), reason="reference gdnsd 3.8.1 not installed")
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_gdnsd_rejects_too(case: Case, tmp_path: Path) -> None:
    result = gdnsd_checkconf(BAD / case.name, case.options, tmp_path)
    assert result.returncode != 0, result.stderr
    assert case.theirs in result.stderr


@pytest.mark.skipif(not REAL_GDNSD.exists(), reason="reference gdnsd 3.8.1 not installed")
@pytest.mark.parametrize("case", [c for c in CASES if c.options], ids=lambda case: case.name)
def test_needs_the_option(case: Case, tmp_path: Path) -> None:
    """The option-dependent cases load without it, in both servers."""
    load_zones(BAD / case.name, ZoneSettings())
    assert gdnsd_checkconf(BAD / case.name, "", tmp_path).returncode == 0
