"""Zone data: names, rdata, the zone file parser, the whole-zone rules and their messages, loading."""
