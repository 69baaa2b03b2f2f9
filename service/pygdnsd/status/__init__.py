"""The HTTP status listener: ``/metrics`` for Prometheus, ``/json``, and a status page.

``http_listen`` (gdnsd 2's option) names where; nothing listens unless it is
set, and only ``http_allow`` networks (loopback by default) may connect.
Read-only, served by a thread of the daemon (``server``), on sockets a
replace hands over like the DNS ones, so scrapes go on through a replace.

* ``http``: request heads in, response bytes out (sans I/O);
* ``server``: the connection loop, its bounds and the listener ``Role``;
* ``endpoints``: which path answers what;
* ``snapshot``: what the endpoints read from the daemon, at one moment;
* ``metrics``: the Prometheus exposition (``prometheus_client``);
* ``page``, ``chart``: the HTML page and its inline SVG chart;
* ``timeline``, ``rate_ring``: reload/replace history and the last hour of
  query rates, both handed to the next daemon in a replace;
* ``zone_facts``, ``process``: per-zone and per-process facts.
"""
