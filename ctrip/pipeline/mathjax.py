"""Vendor MathJax for the book at set-up time: one exact version, integrity-checked.

The book renders its maths offline from `book/_vendor/mathjax/` (an `html_static_path` folder).
The set-up step (`make` installs it; `python -m ctrip.pipeline.mathjax` by hand) fetches the npm
package once with `npm pack`, checks its sha512 against the registry's published integrity
string, and unpacks the es5 bundle. The book build never touches the network: it only checks
that the vendored copy is there (`require_mathjax`).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

MATHJAX_VERSION = "3.2.2"
# `npm view mathjax@3.2.2 dist.integrity`
MATHJAX_INTEGRITY = "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
ENTRY = "tex-chtml.js"
VERSION_FILE = "VERSION"


class MathJaxError(RuntimeError):
    """MathJax could not be vendored or is missing."""


def integrity_of(path: Path) -> str:
    """The npm/SRI integrity string (sha512, base64) of a file."""
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def is_vendored(vendor_dir: Path) -> bool:
    """True when `vendor_dir/mathjax` holds the pinned version."""
    target = Path(vendor_dir) / "mathjax"
    version = target / VERSION_FILE
    return (
        (target / ENTRY).is_file()
        and version.is_file()
        and (version.read_text().strip() == MATHJAX_VERSION)
    )


def unpack(tarball: Path, vendor_dir: Path) -> Path:
    """Check `tarball` against the pinned integrity and unpack its es5 bundle."""
    found = integrity_of(tarball)
    if found != MATHJAX_INTEGRITY:
        raise MathJaxError(
            f"{tarball}: integrity {found} does not match mathjax@{MATHJAX_VERSION} "
            f"({MATHJAX_INTEGRITY}); refusing to vendor it"
        )
    target = Path(vendor_dir) / "mathjax"
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "staging"
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("package/es5/")]
            if not members:
                raise MathJaxError(f"{tarball}: no package/es5/ folder in the archive")
            tar.extractall(staging, members=members, filter="data")
        (staging / "package" / "es5" / VERSION_FILE).write_text(MATHJAX_VERSION + "\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(staging / "package" / "es5", target)
    return target


def vendor_mathjax(vendor_dir: Path, tarball: Path | None = None) -> Path:
    """Vendor the pinned MathJax into `vendor_dir/mathjax` (set-up step; uses npm once)."""
    if is_vendored(vendor_dir):
        return Path(vendor_dir) / "mathjax"
    if tarball is not None:
        return unpack(Path(tarball), vendor_dir)
    npm = shutil.which("npm")
    if npm is None:
        raise MathJaxError(
            f"npm is needed once to vendor mathjax@{MATHJAX_VERSION} for the book; install "
            "Node.js/npm, or pass --tarball with a downloaded mathjax-"
            f"{MATHJAX_VERSION}.tgz"
        )
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--silent", "--pack-destination", tmp],
            capture_output=True,
            text=True,
        )
        tarballs = list(Path(tmp).glob("mathjax-*.tgz"))
        if done.returncode != 0 or not tarballs:
            reason = (done.stderr or done.stdout).strip()[-500:] or f"exit code {done.returncode}"
            raise MathJaxError(f"npm pack mathjax@{MATHJAX_VERSION} failed: {reason}")
        return unpack(tarballs[0], vendor_dir)


def require_mathjax(vendor_dir: Path) -> Path:
    """The vendored MathJax, or an error that says how to vendor it (the build stays offline)."""
    if not is_vendored(vendor_dir):
        raise MathJaxError(
            f"{Path(vendor_dir) / 'mathjax'}: MathJax {MATHJAX_VERSION} is not vendored; run the "
            "set-up step (`make` does it, or `python -m ctrip.pipeline.mathjax`) once, with "
            "access to the npm registry"
        )
    return Path(vendor_dir) / "mathjax"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path("book/_vendor"))
    parser.add_argument("--tarball", type=Path, default=None, help="a downloaded mathjax .tgz")
    args = parser.parse_args(argv)
    try:
        target = vendor_mathjax(args.dest, args.tarball)
    except MathJaxError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"MathJax {MATHJAX_VERSION} in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
