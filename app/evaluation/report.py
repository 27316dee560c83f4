"""Plain-text tables for reports (what the CLI prints and experiments/README.md quotes)."""
from __future__ import annotations

import math


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


def table(header: list[str], rows: list[list], mean_row: bool = False) -> str:
    """A Markdown table; ``mean_row`` appends the column means of numeric columns (ignoring missing cells)."""
    rows = [list(r) for r in rows]
    if mean_row and rows:
        means = ["mean"]
        for col in range(1, len(header)):
            vals = [r[col] for r in rows if isinstance(r[col], (int, float)) and r[col] is not None]
            means.append(sum(vals) / len(vals) if vals else None)
        rows.append(means)
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])
