"""Bar charts drawn on the server as SVG: no script, no request to anywhere."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from solaris_hooks.admin.dashboard import DayUsage
from solaris_hooks.formats import format_day_month, format_moment, format_number


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # the tooltip: the day and its value
    value: int


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # (y, label) of the horizontal grid lines
    axis_labels: list[tuple[float, str]]  # (x, label) under the bars
    plot_left: int
    plot_bottom: int
    empty: bool


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10^n at or above value, so grid lines fall on round numbers."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def bar_chart(
    points: Sequence[tuple[str, str, int]], format_value: Callable[[int], str], width: int = 720, height: int = 220
) -> BarChart:
    """points: (short axis label, full label, value), oldest first."""
    plot_left, plot_right, plot_top, plot_bottom = 56, width - 8, 10, height - 26
    plot_width, plot_height = plot_right - plot_left, plot_bottom - plot_top
    top = nice_ceiling(max((value for _, _, value in points), default=0))
    slot = plot_width / max(1, len(points))
    bars, axis_labels = [], []
    label_every = max(1, round(len(points) / 8))  # about eight dates under the axis
    for index, (short, full, value) in enumerate(points):
        bar_height = plot_height * value / top
        x = plot_left + index * slot
        bars.append(
            Bar(
                x=round(x + slot * 0.15, 1),
                y=round(plot_bottom - bar_height, 1),
                width=round(slot * 0.7, 1),
                height=round(bar_height, 1),
                label=f"{full}: {format_value(value)}",
                value=value,
            )
        )
        if (len(points) - 1 - index) % label_every == 0:  # counted from today, which is always labelled
            axis_labels.append((round(x + slot / 2, 1), short))
    ticks = [
        (round(plot_bottom - plot_height * fraction, 1), format_value(round(top * fraction)))
        for fraction in (0, 0.25, 0.5, 0.75, 1)
    ]
    return BarChart(
        width=width,
        height=height,
        bars=bars,
        ticks=ticks,
        axis_labels=axis_labels,
        plot_left=plot_left,
        plot_bottom=plot_bottom,
        empty=not any(value for _, _, value in points),
    )


def tokens_per_day_chart(days: Sequence[DayUsage], locale: str, width: int = 720, height: int = 220) -> BarChart:
    """Tokens charged per day, labelled the way the reader writes dates and numbers."""
    return bar_chart(
        [(format_day_month(usage.day, locale), format_moment(usage.day, locale), usage.tokens) for usage in days],
        lambda value: format_number(value, locale),
        width,
        height,
    )
