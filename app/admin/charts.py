"""Small charts drawn on the server as SVG: no script, no CDN, readable without colour.

Each chart is an `<svg role="img">` with a title and a description naming what it shows;
the numbers themselves are in the accessible table printed beside it. Series are told
apart by colour and, for lines, by marker shape, and every series is named in a legend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from markupsafe import Markup, escape

# Colour-blind-safe palette (Okabe-Ito, darkened for contrast on white).
COLOURS = ("#0b5cad", "#c25e00", "#1e7b34", "#9c2aa0", "#b3261e", "#00838f", "#6d4c41", "#5b6475")
WIDTH, HEIGHT = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 48


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[Optional[float]]


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2, 2.5, 5 x 10^n)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10 ** exponent
        if candidate >= value:
            return float(candidate)
    return float(10 ** (exponent + 1))


def _frame(title: str, desc: str, chart_id: str, body: list[str], labels: Sequence[str],
           y_max: float, fmt: Callable[[float], str]) -> list[str]:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" class="chart-svg" '
           f'aria-labelledby="{chart_id}-title {chart_id}-desc" xmlns="http://www.w3.org/2000/svg">',
           f'<title id="{chart_id}-title">{escape(title)}</title>',
           f'<desc id="{chart_id}-desc">{escape(desc)}</desc>']
    for i in range(5):
        value = y_max * i / 4
        y = TOP + plot_h - plot_h * i / 4
        out.append(f'<line class="gridline" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" '
                   f'y2="{y:.1f}" stroke="#dde3ea" stroke-width="1"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" '
                   f'fill="#3b4454">{escape(fmt(value))}</text>')
    n = max(1, len(labels))
    every = max(1, math.ceil(n / 12))  # at most about 12 labels along the bottom
    for i, label in enumerate(labels):
        if i % every:
            continue
        x = LEFT + plot_w * (i + 0.5) / n
        out.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="end" font-size="11" '
                   f'fill="#3b4454" transform="rotate(-30 {x:.1f} {TOP + plot_h + 16})">'
                   f'{escape(label)}</text>')
    out.extend(body)
    out.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" '
               f'y2="{TOP + plot_h}" stroke="#5b6475" stroke-width="1"/>')
    out.append("</svg>")
    return out


def _legend(series: Sequence[Series]) -> str:
    items = "".join(f'<li><span class="swatch sw-{i % len(COLOURS)}" aria-hidden="true"></span>'
                    f'{escape(s.name)}</li>' for i, s in enumerate(series))
    return f'<ul class="legend" aria-hidden="true">{items}</ul>'


def _marker(kind: int, x: float, y: float, colour: str, tip: str) -> str:
    title = f"<title>{escape(tip)}</title>"
    shape = kind % 3
    if shape == 0:
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">{title}</circle>'
    if shape == 1:
        return (f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="{colour}">'
                f'{title}</rect>')
    return (f'<path d="M{x:.1f} {y - 4.5:.1f} L{x + 4.5:.1f} {y + 3.5:.1f} L{x - 4.5:.1f} '
            f'{y + 3.5:.1f} Z" fill="{colour}">{title}</path>')


def line_chart(series: Sequence[Series], labels: Sequence[str], *, title: str, desc: str,
               chart_id: str, fmt: Callable[[float], str] = lambda v: f"{v:g}",
               y_max: Optional[float] = None) -> Markup:
    """One line per series across the periods; gaps where a value is missing."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    peak = max([v for s in series for v in s.values if v is not None] or [0])
    top = y_max if y_max is not None else _nice_max(peak)
    n = max(1, len(labels))
    body = []
    for k, s in enumerate(series[:len(COLOURS)]):
        colour = COLOURS[k]
        points, segments = [], []
        for i, value in enumerate(s.values):
            if value is None:
                if points:
                    segments.append(points)
                points = []
                continue
            x = LEFT + plot_w * (i + 0.5) / n
            y = TOP + plot_h - plot_h * min(value, top) / top
            points.append((x, y, f"{s.name}, {labels[i]}: {fmt(value)}"))
        if points:
            segments.append(points)
        for seg in segments:
            if len(seg) > 1:
                d = " ".join(f"{'M' if j == 0 else 'L'}{x:.1f} {y:.1f}" for j, (x, y, _) in enumerate(seg))
                body.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"/>')
            body.extend(_marker(k, x, y, colour, tip) for x, y, tip in seg)
    svg = "".join(_frame(title, desc, chart_id, body, labels, top, fmt))
    return Markup(f'<figure class="chart">{svg}{_legend(series[:len(COLOURS)])}</figure>')


def bar_chart(series: Sequence[Series], labels: Sequence[str], *, title: str, desc: str,
              chart_id: str, fmt: Callable[[float], str] = lambda v: f"{v:g}",
              stacked: bool = False) -> Markup:
    """Bars per period: side by side, or stacked (for parts of a whole)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    shown = list(series[:len(COLOURS)])
    n = max(1, len(labels))
    if stacked:
        peak = max([sum(max(0.0, s.values[i] or 0) for s in shown) for i in range(len(labels))] or [0])
    else:
        peak = max([v or 0 for s in shown for v in s.values] or [0])
    top = _nice_max(peak)
    slot = plot_w / n
    gap = slot * 0.2
    body = []
    for i in range(len(labels)):
        x0 = LEFT + slot * i + gap / 2
        base = 0.0
        for k, s in enumerate(shown):
            value = max(0.0, s.values[i] or 0)
            height = plot_h * value / top
            tip = f"{s.name}, {labels[i]}: {fmt(value)}"
            if stacked:
                x, w = x0, slot - gap
                y = TOP + plot_h - plot_h * (base + value) / top
                base += value
            else:
                w = (slot - gap) / max(1, len(shown))
                x, y = x0 + w * k, TOP + plot_h - height
            if height > 0:
                body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w - 1, 1):.1f}" '
                            f'height="{height:.1f}" fill="{COLOURS[k]}"><title>{escape(tip)}</title></rect>')
    svg = "".join(_frame(title, desc, chart_id, body, labels, top, fmt))
    return Markup(f'<figure class="chart">{svg}{_legend(shown)}</figure>')


def percent(value: float) -> str:
    return f"{value:g}%"


def pounds_short(pence: float) -> str:
    pounds = pence / 100
    if pounds >= 1_000_000:
        return f"£{pounds / 1_000_000:.2f}".rstrip("0").rstrip(".") + "m"
    if pounds >= 10_000:
        return f"£{pounds / 1000:.0f}k"
    return f"£{pounds:,.0f}"
