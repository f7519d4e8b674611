"""Bar charts as SVG pictures, drawn on the server for the admin's usage page.

Small on purpose: two chart shapes and no JavaScript. The page shows them as `<img>`, so
they are pictures under the site's Content-Security-Policy; every label is escaped, and
colours are attributes, not inline styles.
"""

from collections.abc import Callable, Sequence
from html import escape

WIDTH = 760
HEIGHT = 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 170, 36, 40
# Mistral's orange ramp, then neutral hues that stay apart from it and from each other.
PALETTE = (
    "#fa500f",
    "#2563eb",
    "#16a34a",
    "#9333ea",
    "#ffaf00",
    "#0891b2",
    "#db2777",
    "#65a30d",
    "#64748b",
    "#e10500",
)
_FONT = 'font-family="system-ui, sans-serif" font-size="12" fill="#334155"'


def stacked_bars(
    *,
    title: str,
    labels: Sequence[str],
    series: dict[str, Sequence[float]],
    value_format: Callable[[float], str],
) -> str:
    """One bar per label (a day), stacked by series (a model), with a legend; series
    beyond the palette's length are drawn in its last colour."""
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    top = max(totals, default=0) or 1
    parts = [_open(title)]
    for fraction in (0, 0.5, 1):
        y = _TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + plot_w}" y2="{y:.1f}" '
            'stroke="#e2e8f0"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" {_FONT}>'
            f"{escape(value_format(top * fraction))}</text>"
        )
    if not labels or not any(totals):
        parts.append(_empty(plot_w, plot_h))
    slot = plot_w / max(len(labels), 1)
    bar_w = max(1.0, slot * 0.7)
    every = max(1, len(labels) // 10)  # at most about ten labels under the axis
    for i, label in enumerate(labels):
        x = _LEFT + slot * i + (slot - bar_w) / 2
        y = _TOP + plot_h
        for n, (name, values) in enumerate(series.items()):
            h = plot_h * values[i] / top
            if h <= 0:
                continue
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{_colour(n)}"><title>{escape(label)} · {escape(name)}: '
                f"{escape(value_format(values[i]))}</title></rect>"
            )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{_TOP + plot_h + 16}" text-anchor="middle" '
                f"{_FONT}>{escape(label)}</text>"
            )
    for n, name in enumerate(series):
        y = _TOP + 4 + n * 18
        parts.append(
            f'<rect x="{WIDTH - _RIGHT + 14}" y="{y}" width="12" height="12" '
            f'fill="{_colour(n)}"/><text x="{WIDTH - _RIGHT + 32}" y="{y + 10}" {_FONT}>'
            f"{escape(_clip(name, 22))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def horizontal_bars(
    *, title: str, items: Sequence[tuple[str, float]], value_format: Callable[[float], str]
) -> str:
    """One labelled bar per item (a user), longest first as given."""
    row_h = 24
    height = _TOP + max(len(items), 1) * row_h + 16
    label_w, plot_w = 160, WIDTH - 160 - 120
    top = max((value for _, value in items), default=0) or 1
    parts = [_open(title, height=height)]
    if not items:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{_TOP + 16}" text-anchor="middle" {_FONT}>'
            "No usage in this period</text>"
        )
    for i, (label, value) in enumerate(items):
        y = _TOP + i * row_h
        w = max(1.0, plot_w * value / top) if value else 0
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" {_FONT}>'
            f"{escape(_clip(label, 24))}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" '
            f'fill="{PALETTE[0]}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" {_FONT}>'
            f"{escape(value_format(value))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _open(title: str, *, height: int = HEIGHT) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">'
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>'
        f'<text x="{_LEFT}" y="20" font-family="system-ui, sans-serif" font-size="14" '
        f'font-weight="600" fill="#0f172a">{escape(title)}</text>'
    )


def _empty(plot_w: float, plot_h: float) -> str:
    return (
        f'<text x="{_LEFT + plot_w / 2}" y="{_TOP + plot_h / 2}" text-anchor="middle" '
        f"{_FONT}>No usage in this period</text>"
    )


def _colour(n: int) -> str:
    return PALETTE[min(n, len(PALETTE) - 1)]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
