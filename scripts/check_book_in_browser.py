"""Load every page of a built book in headless Chromium, as a reader would, and fail on faults.

    python scripts/check_book_in_browser.py _build/html

Serves the folder on 127.0.0.1, opens each HTML page, and reports:
- any console error or uncaught JavaScript exception;
- any image that does not load;
- any internal link to a file that does not exist, or to an anchor the target page lacks;
- any request that leaves the machine (the book must work offline): it is blocked and reported.

Chromium comes from the distribution's packages (`apt-get install chromium`, done here when it is
missing and we are root); the browser is driven with Playwright, which never downloads its own.
Exit code 0 when every page is clean, 1 otherwise (each fault on its own line).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@dataclass
class PageReport:
    page: str
    faults: list[str] = field(default_factory=list)


def find_chromium(install: bool) -> str:
    """Path of the distribution's Chromium, installing the package when allowed."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if not install:
        raise SystemExit("error: chromium is not installed (apt-get install chromium)")
    if os.geteuid() != 0:
        raise SystemExit("error: chromium is missing; install it with `apt-get install chromium`")
    print("chromium is missing: installing it from the distribution's packages", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
    path = shutil.which("chromium")
    if not path:
        raise SystemExit("error: apt-get installed chromium but it is not on PATH")
    return path


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A quiet static server for `root` on a free loopback port."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def pages_of(root: Path) -> list[str]:
    """Every HTML page of the book, relative to its root (Sphinx's index pages excepted)."""
    pages = []
    for path in sorted(root.rglob("*.html")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("_static/", "_sources/", "_images/")) or rel in SKIP_PAGES:
            continue
        pages.append(rel)
    return pages


def _anchors_js() -> str:
    return "Array.from(document.querySelectorAll('[id], a[name]')).map(e => e.id || e.name)"


def check_page(page, base: str, rel: str, root: Path, anchors: dict[str, set[str]]) -> PageReport:
    report = PageReport(rel)
    external: list[str] = []

    def on_route(route) -> None:
        host = urlparse(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            route.continue_()
        else:
            external.append(route.request.url)
            route.abort()

    page.route("**/*", on_route)
    page.on("console", lambda m: m.type == "error" and report.faults.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: report.faults.append(f"javascript: {e}"))

    def on_response(resp) -> None:
        if resp.status >= 400 and urlparse(resp.url).hostname in LOCAL_HOSTS:
            report.faults.append(f"HTTP {resp.status}: {resp.url.removeprefix(base)}")

    page.on("response", on_response)
    page.goto(urljoin(base, rel), wait_until="load")
    page.wait_for_load_state("networkidle")
    broken = page.evaluate(
        "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
        ".map(i => i.getAttribute('src'))"
    )
    report.faults += [f"image does not load: {src}" for src in broken]
    links = page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    for link in links:
        url, fragment = urldefrag(link)
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or parsed.hostname not in LOCAL_HOSTS:
            continue
        target = unquote(parsed.path).lstrip("/") or "index.html"
        if target.endswith("/"):
            target += "index.html"
        if not (root / target).is_file():
            report.faults.append(f"broken link: {link.removeprefix(base)}")
        elif fragment and target.endswith(".html"):
            if target not in anchors:
                text = (root / target).read_text(errors="replace")
                anchors[target] = _ids_in(text)
            if fragment not in anchors[target]:
                report.faults.append(f"broken anchor: {link.removeprefix(base)}")
    report.faults += [f"external request (the book must be offline): {u}" for u in external]
    page.unroute("**/*")
    return report


def _ids_in(html: str) -> set[str]:
    import re

    return set(re.findall(r'\b(?:id|name)="([^"]+)"', html))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="the built book (e.g. _build/html)")
    parser.add_argument("--no-install", action="store_true", help="never apt-get chromium")
    args = parser.parse_args(argv)
    root = args.html.resolve()
    if not (root / "index.html").is_file():
        print(f"error: {root}: no index.html (build the book first)", file=sys.stderr)
        return 2
    chromium = find_chromium(install=not args.no_install)
    from playwright.sync_api import sync_playwright

    server, base = serve(root)
    reports: list[PageReport] = []
    anchors: dict[str, set[str]] = {}
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=flags)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            for rel in pages_of(root):
                page = context.new_page()
                reports.append(check_page(page, base, rel, root, anchors))
                page.close()
            browser.close()
    finally:
        server.shutdown()
    faults = [(r.page, f) for r in reports for f in r.faults]
    for page_name, fault in faults:
        print(f"{page_name}: {fault}")
    print(f"{len(reports)} pages checked in Chromium, {len(faults)} faults")
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main())
