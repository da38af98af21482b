"""Horizontal bar charts drawn as inline SVG on the server (no JavaScript), with their numbers."""

from dataclasses import dataclass

ROW_HEIGHT = 22
BAR_AREA_WIDTH = 280


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    y: int
    width: int


@dataclass(frozen=True)
class BarChart:
    """A chart a person reads at a glance; the template shows the same numbers as a table."""

    title: str
    label_heading: str
    value_heading: str
    bars: list[Bar]

    @property
    def height(self) -> int:
        return ROW_HEIGHT * len(self.bars)


def bar_chart(
    title: str, rows: list[tuple[str, int]], *, label_heading: str, value_heading: str = "Requests"
) -> BarChart:
    """Return a chart of ``rows`` (label, value), bars scaled to the largest value."""
    longest = max((value for _, value in rows), default=0) or 1
    bars = [
        Bar(
            label=label,
            value=value,
            y=i * ROW_HEIGHT,
            width=round(BAR_AREA_WIDTH * value / longest),
        )
        for i, (label, value) in enumerate(rows)
    ]
    return BarChart(
        title=title, label_heading=label_heading, value_heading=value_heading, bars=bars
    )
