"""The status page's chart: queries per second by rcode over the last hour, as inline SVG.

A stacked area chart drawn by hand: each outcome's band is the area under
its running total, painted from the tallest down, so one path per outcome
(just its upper edge) is enough. Each rate is a step over the 10 s it
was measured in. The time axis spans the last hour, or less while the
samples cover less (never under ``MIN_SPAN``): a daemon up for a minute
shows that minute, not a sliver at the right edge. Integer coordinates in a 720x240 viewBox
keep it to a few kB per outcome with traffic; outcomes with none are not
drawn. The SVG scales to the page's width (``width="100%"``), so the same
markup reads on a laptop and a phone; its text takes its size from the
page's style (``.axis``), larger in user units on a narrow screen, where the
drawing is scaled down most.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from pygdnsd.engine.stats import OUTCOME_COUNTERS
from pygdnsd.status.rate_ring import WINDOW_SECONDS, Rate

MIN_SPAN = 300.0
# (span up to, tick every) in seconds: about four ticks whatever the span.
TICKS = ((300.0, 60.0), (900.0, 300.0), (1800.0, 600.0), (WINDOW_SECONDS, 900.0))

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 66, 10, 12, 30
COLOURS = {
    "noerror": "#2e7d32",
    "nxdomain": "#1565c0",
    "refused": "#ef6c00",
    "notimp": "#6a1b9a",
    "badvers": "#6d4c41",
    "formerr": "#c62828",
    "dropped": "#616161",
}


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return 10.0 * power


def short_number(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:g}{suffix}"
    return f"{value:g}"


def svg(rates: Sequence[Rate], now: float) -> str:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    covered = now - rates[0].since if rates else 0.0
    span = min(WINDOW_SECONDS, max(MIN_SPAN, covered))
    start = now - span
    totals = [sum(rate.per_second) for rate in rates]
    top = nice_ceiling(max(totals, default=0.0))

    def x(at: float) -> int:
        return LEFT + round((min(max(at, start), now) - start) / span * plot_w)

    def y(value: float) -> int:
        return TOP + plot_h - round(value / top * plot_h)

    parts = [
        f'<svg id="qps-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        'aria-labelledby="qps-chart-title" xmlns="http://www.w3.org/2000/svg">',
        '<title id="qps-chart-title">Queries per second by rcode, the last hour</title>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>',
    ]
    for i in range(5):
        value = top * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value)}" y2="{y(value)}" stroke="#e0e0e0"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y(value) + 4}" text-anchor="end" class="axis">{short_number(value)}</text>'
        )
    step = next(every for limit, every in TICKS if span <= limit)
    for back in range(int(span // step), -1, -1):
        at = now - back * step
        minutes = round(back * step / 60)
        label = "now" if back == 0 else f"-{minutes} min"
        anchor = "end" if back == 0 else "start" if at - start < step / 2 else "middle"
        parts.append(f'<line x1="{x(at)}" x2="{x(at)}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#e0e0e0"/>')
        parts.append(f'<text x="{x(at)}" y="{HEIGHT - 8}" text-anchor="{anchor}" class="axis">{label}</text>')
    if not rates:
        parts.append(
            f'<text x="{LEFT + plot_w // 2}" y="{TOP + plot_h // 2}" text-anchor="middle" class="axis" '
            'fill="#666">no samples yet: one is taken every 10 seconds</text>'
        )
    # Running totals, tallest band (every outcome) first, so each is painted over by those below it.
    for index in reversed(range(len(OUTCOME_COUNTERS))):
        if not any(rate.per_second[index] for rate in rates):
            continue
        name = OUTCOME_COUNTERS[index]
        edge = " ".join(
            f"{x(rate.since)},{height} {x(rate.at)},{height}"
            for rate in rates
            for height in (y(sum(rate.per_second[: index + 1])),)
        )
        first, last = x(rates[0].since), x(rates[-1].at)
        parts.append(
            f'<path class="band" data-rcode="{escape(name)}" fill="{COLOURS[name]}" '
            f'd="M{first},{TOP + plot_h} L{edge} L{last},{TOP + plot_h} Z"><title>{escape(name)}</title></path>'
        )
    parts.append("</svg>")
    return "".join(parts)
