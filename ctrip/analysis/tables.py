"""The shared formatting of the book's generated text: numbers, CIs, the reading of a paired
difference, and MyST tables with a caption and a label. The wording modules (e.g.
`ctrip.analysis.reading` for the results chapter) build their tables and sentences with these,
so every page prints a number and its CI the same way."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd


def fmt(x: float, digits: int = 1) -> str:
    """`x` at `digits` decimals, "n/a" where it is missing or not finite."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain markdown (pipe) table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def bound(x: float, digits: int) -> str:
    """A CI bound at `digits`, or with up to 2 more where it would read as 0 but is not: the
    side of 0 it lies on is what the reading next to it says."""
    if x is not None and np.isfinite(x) and x != 0:
        extra = 0
        while extra < 2 and round(abs(x), digits + extra) == 0:
            extra += 1
        digits += extra
    return fmt(x, digits)


def ci(value: float, low: float, high: float, digits: int = 1) -> str:
    """A value with its CI in brackets, each bound shown on its side of 0."""
    return f"{fmt(value, digits)} [{bound(low, digits)}, {bound(high, digits)}]"


def stated(lines: list[str], csv: str) -> str:
    """Generated readings under a table, then the link to download the table's CSV."""
    return ("\nStated from the numbers (generated; a CI that contains 0 is no difference):\n\n"
            + "\n".join(lines)
            + f"\n\n*{{download}}`Download as CSV </book/executed/tables/{csv}>`.*\n")  # fmt: skip


def read_difference(d: pd.Series, same: str, up: str, down: str) -> str:
    """How a paired difference reads: `same` when its CI contains 0, else `up` or `down` by the
    sign of the difference."""
    if d["ci_low"] <= 0 <= d["ci_high"]:
        return same
    return up if d["difference"] > 0 else down


def numbers_table(caption: str, name: str, header: list[str], rows: list[list[str]]) -> str:
    """A numbered, captioned MyST table whose cells stay on one line (CSS class "numbers")."""
    return (
        f"```{{table}} {caption}\n:name: {name}\n:class: numbers\n\n"
        + md_table(header, rows)
        + "```\n"
    )


_TABLE_DIRECTIVE = re.compile(
    r"```\{table\} (?P<caption>[^\n]*)\n(?::[a-z]+:[^\n]*\n)*\n(?P<body>.*?)```\n", re.S
)
_DOWNLOAD_ROLE = re.compile(r"\{download\}`(?P<text>[^`<]*?) *<[^`>]*>`")


def notebook_markdown(text: str) -> str:
    """`text` (MyST, as a chapter pastes it) as the notebook shows it: each numbered table as a
    bold caption over a plain table, a download link as its words. The labels and links belong
    to the chapter, where each table is defined once; a notebook's markdown output renders no
    directive reliably."""
    text = _TABLE_DIRECTIVE.sub(lambda m: f"**{m['caption']}**\n\n{m['body']}", text)
    return _DOWNLOAD_ROLE.sub(lambda m: m["text"], text)


def publish(key: str, text: str) -> None:
    """Glue the MyST markdown `text` under `key` in the running notebook, for a chapter to paste
    with ```{glued} key``` (book/_ext/glued.py), and show it in the notebook too."""
    from IPython.display import Markdown, display
    from myst_nb import glue

    glue(key, Markdown(text), display=False)
    display(Markdown(notebook_markdown(text)))
