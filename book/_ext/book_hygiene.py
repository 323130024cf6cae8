"""Local Sphinx extension: each page includes every script once.

Jupyter Book 1.x registers sphinx-thebe's inline configuration script twice, so every page
throws "Identifier 'THEBE_JS_URL' has already been declared" in the browser. This drops repeated
script entries (same file, same inline body) from each page's context, keeping the first.
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


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", drop_repeated_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
