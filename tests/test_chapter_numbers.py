"""No number is typed by hand in a chapter: every number of its prose and captions comes from a
result, pasted by key (```{glued} key```) from the notebook that made it.

`hand_typed_numbers` is the checker; a chapter joins the check by its entry in `CHAPTERS`, with
the numbers its prose may name beyond `NAMES` (e.g. a definition such as "the 12 leads")."""

from __future__ import annotations

import re

import pytest

from ctrip.pipeline.cache import REPO_DIR

# What a digit in prose may be without being a result: the paper's own table and figure numbers,
# a role's target ({cite}`kafali2026ctrip`, {ref}`...`), inline code, a link's address, the kind of
# a model (2-D, 1-D), the paper's venue, year and arXiv number, and the 0 a CI contains or not.
NAMES = [
    r"\b(?:Table|Fig\.) \d+[A-Za-z]?\b",
    r"\{[\w:-]+\}`[^`]*`",
    r"`[^`]*`",
    r"\]\([^)]*\)",
    r"\b[12]-D\b",
    r"\bMICCAI \d{4}\b",
    r"\barXiv \d{4}\.\d{4,5}\b",
    r"\b(?:contains?|includes?|contain) 0\b",
]
# Lines that are no prose: a label, a directive's options, a front-matter field.
NOT_PROSE = re.compile(r"^\s*(?:\([\w-]+\)=|:[\w-]+:.*|[\w.-]+:\s.*)$")
FENCE = re.compile(r"^(`{3,}|:{3,})\s*(\{([\w:-]+)\})?\s*(.*)$")
# Directives whose body is a caption or prose; any other fenced block (code, includes) is skipped.
CAPTIONED = {"figure", "table", "note", "admonition", "warning"}


def hand_typed_numbers(text: str, names: list[str] = NAMES) -> list[str]:
    """The lines of a chapter's prose and captions that hold a digit `names` does not account
    for, each as "line N: text"; a pasted result (a `glued` directive) holds none by design."""
    found, fences, front = [], [], text.startswith("---")
    for number, line in enumerate(text.splitlines(), 1):
        if front:
            front = number == 1 or line.strip() != "---"
            continue
        fence = FENCE.match(line.strip())
        if fence and (not fences or fence.group(1) == fences[-1][0]):
            if fences and not fence.group(2) and not fence.group(4):
                fences.pop()
            else:
                fences.append((fence.group(1), fence.group(3)))
            continue
        if fences and fences[-1][1] not in CAPTIONED or NOT_PROSE.match(line):
            continue
        rest = line
        for pattern in names:
            rest = re.sub(pattern, " ", rest)
        if re.search(r"\d", rest):
            found.append(f"line {number}: {line.strip()}")
    return found


# chapter -> the numbers its prose may name beyond NAMES
CHAPTERS: dict[str, list[str]] = {"book/results.md": [], "book/intro.md": []}


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_a_chapter_types_no_number_by_hand(chapter):
    text = (REPO_DIR / chapter).read_text()
    assert hand_typed_numbers(text, NAMES + CHAPTERS[chapter]) == []


def test_the_checker_finds_a_typed_number_in_prose_and_in_a_caption():
    chapter = """---
title: x 2
---
(table-2)=
## Table 2: agreement

A CI that contains 0 is no difference (Table 3b, {cite}`kafali2026ctrip`, a 2-D CNN).

```{glued} table2
```

```{figure} executed/figures/fig3.png
:width: 100%

Fig. 3. The curves over 5 seeds.
```

```bash
make book -j 2
```

C-TRIP reaches r 0.61 here.
"""
    assert hand_typed_numbers(chapter) == [
        "line 15: Fig. 3. The curves over 5 seeds.",
        "line 22: C-TRIP reaches r 0.61 here.",
    ]
