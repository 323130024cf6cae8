"""Local Sphinx extension: a chapter pastes the MyST markdown that a notebook glued.

myst-nb 1.x pastes another document's glue only as text, HTML or an image (`{glue}` with
`:doc:`); `{glue:md}` reads the current notebook only. A table with a numbered caption, a label
and a download link is MyST markdown, glued by the notebook that computed it
(`ctrip.analysis.report.publish`), so this directive reads it from the executed notebook and
parses it in the chapter:

    ```{paste-glued} executed/umaps::table5
    ```

The path is the executed notebook's document name relative to the chapter; the chapter is
rebuilt when the notebook changes. A missing notebook or key stops the build (`-W`).
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

GLUE_MIME = "application/papermill.record/text/markdown"  # myst_nb.glue(..., display=False)


def glued_markdown(notebook: Path, key: str) -> str:
    """The markdown glued under `key` in `notebook`; KeyError when it glued none."""
    book = json.loads(notebook.read_text())
    for cell in book.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if output.get("metadata", {}).get("scrapbook", {}).get("name") != key:
                continue
            data = output.get("data", {})
            text = data.get(GLUE_MIME, data.get("text/markdown"))
            if text is not None:
                return "".join(text) if isinstance(text, list) else text
    raise KeyError(f"{notebook}: no markdown glued under {key!r}")


class PasteGlued(SphinxDirective):
    """Paste a notebook's glued MyST markdown: argument `<notebook document>::<key>`."""

    required_arguments = 1
    final_argument_whitespace = False
    has_content = False

    def run(self) -> list[nodes.Node]:
        doc, sep, key = self.arguments[0].partition("::")
        if not sep or not key:
            raise self.error(f"paste-glued: {self.arguments[0]!r} is not <notebook>::<key>")
        docname = posixpath.normpath(posixpath.join(posixpath.dirname(self.env.docname), doc))
        notebook = Path(self.env.srcdir) / f"{docname}.ipynb"
        self.env.note_dependency(str(notebook))
        try:
            text = glued_markdown(notebook, key)
        except (OSError, KeyError, json.JSONDecodeError) as err:
            raise self.error(f"paste-glued: {err}") from None
        container = nodes.container()
        self.state.nested_parse(
            StringList(text.splitlines(), source=f"{notebook}::{key}"), self.content_offset,
            container,
        )  # fmt: skip
        return container.children


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("paste-glued", PasteGlued)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
