"""Local Sphinx extension: each page includes every script once, and each table and figure
carries one number.

Jupyter Book 1.x registers sphinx-thebe's inline configuration script twice, so every page
throws "Identifier 'THEBE_JS_URL' has already been declared" in the browser. This drops repeated
script entries (same file, same inline body) from each page's context, keeping the first.

Its LaTeX extension (sphinx_jupyterbook_latex) also turns Sphinx's `numfig` on for every
builder, whatever `_config.yml` says, so Sphinx would put its running number before each caption
("Table 1 Table 2. Agreement ..."). The captions carry the paper's numbers, so this turns
`numfig` off again (the book cross-references with {ref}, which needs no numbers).
"""

from __future__ import annotations

from typing import Any


def _script_key(script: Any) -> tuple[str, str]:
    filename = getattr(script, "filename", script) or ""  # inline scripts: None or ""
    body = getattr(script, "attributes", {}).get("body", "")
    return (str(filename), str(body))


def drop_repeated_scripts(
    app: Any, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in scripts:
        key = _script_key(script)
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    context["script_files"] = unique


def one_number_per_caption(app: Any, config: Any) -> None:
    """No running numbers: each caption carries its own (the paper's Table 2, Fig. 3, ...). Runs
    after the LaTeX extension's config-inited handler, which turns `numfig` on."""
    config["numfig"] = False


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", one_number_per_caption, priority=900)
    app.connect("html-page-context", drop_repeated_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
