"""The geoip plugin (gdnsd-plugin-geoip(8)): GSLB by client network, with metafo's failover.

One file per concern: ``config`` reads the maps, ``locations`` places a
record and picks its datacenters, ``mmdb`` reads MaxMind DB files,
``addresses`` maps client addresses into one 128-bit table, ``networks``
builds and searches that table, ``tables`` puts a map's files together,
``live`` reloads them, ``decisions`` remembers answers, ``plugin`` is the
resolver.
"""
