"""Local Sphinx extension: a chapter pastes what an executed notebook published, by key.

A notebook publishes a table or a reading with myst-nb's `glue(key, Markdown(text))` (through
`ctrip.analysis.tables.publish`); a chapter pastes it with

    ```{glued} key
    ```

The text is parsed as MyST in the chapter, so its tables keep their caption and label and its
roles ({download}, {ref}, {cite}) work. myst-nb 1.x pastes markdown only within the notebook
that glued it (`{glue:md}`), and across documents only plain text, HTML or images (`:doc:`),
which would lose the labels; hence this directive. The key is looked up in every executed
notebook of the book (`book/executed/*.ipynb`), so a chapter names no notebook file: a key
glued by no notebook, or by two, fails the build.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

GLUE_PREFIX = "application/papermill.record/"  # myst_nb.ext.glue.GLUE_PREFIX
EXECUTED = Path("book") / "executed"


def _text(value: str | list[str]) -> str:
    return "".join(value) if isinstance(value, list) else value


def glued_markdown(notebook: Path) -> dict[str, str]:
    """The markdown each glue output of `notebook` holds, by key."""
    stat = notebook.stat()
    return dict(_glued_markdown(str(notebook), stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=256)
def _glued_markdown(notebook: str, mtime_ns: int, size: int) -> tuple[tuple[str, str], ...]:
    """`glued_markdown`, read once per version of the file (every `glued` directive asks)."""
    found = {}
    for cell in json.loads(Path(notebook).read_text()).get("cells", []):
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            data = output.get("data", {})
            for mime in (GLUE_PREFIX + "text/markdown", "text/markdown"):
                if name and mime in data:
                    found[name] = _text(data[mime])
                    break
    return tuple(found.items())


def glued_index(executed: Path) -> dict[str, list[tuple[Path, str]]]:
    """Every key glued as markdown by the notebooks in `executed`, with each notebook and text."""
    index: dict[str, list[tuple[Path, str]]] = {}
    for notebook in sorted(executed.glob("*.ipynb")):
        for key, text in glued_markdown(notebook).items():
            index.setdefault(key, []).append((notebook, text))
    return index


class GluedDirective(SphinxDirective):
    """```{glued} key```: the markdown an executed notebook glued under `key`, parsed here."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        key = self.arguments[0]
        executed = Path(self.env.srcdir) / EXECUTED
        found = glued_index(executed).get(key, [])
        if len(found) != 1:
            where = ", ".join(p.name for p, _ in found) or "no executed notebook"
            raise self.error(
                f"glued: key {key!r} is glued by {where} in {executed} (needs exactly one)"
            )
        notebook, text = found[0]
        self.env.note_dependency(str(notebook))
        holder = nodes.container()
        lines = StringList(text.splitlines(), source=f"{notebook.name}:{key}")
        self.state.nested_parse(lines, self.content_offset, holder)
        return holder.children


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("glued", GluedDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
