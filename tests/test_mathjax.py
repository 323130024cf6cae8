"""MathJax is vendored at set-up from one pinned, integrity-checked package; the build is offline."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from ctrip.pipeline import mathjax


def _fake_package(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_integrity_of_matches_the_npm_format(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"abc")
    # sha512("abc"), base64, as npm writes it in dist.integrity
    assert mathjax.integrity_of(blob) == (
        "sha512-3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw=="
    )


def test_a_tampered_package_is_refused(tmp_path: Path) -> None:
    tgz = _fake_package(tmp_path / "mathjax-3.2.2.tgz", {"package/es5/tex-chtml.js": b"evil"})
    with pytest.raises(mathjax.MathJaxError, match="integrity"):
        mathjax.unpack(tgz, tmp_path / "vendor")
    assert not (tmp_path / "vendor" / "mathjax").exists()


def test_unpack_keeps_only_the_es5_bundle_and_records_the_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tgz = _fake_package(
        tmp_path / "mathjax.tgz",
        {"package/es5/tex-chtml.js": b"// mathjax", "package/ts/source.ts": b"x"},
    )
    monkeypatch.setattr(mathjax, "MATHJAX_INTEGRITY", mathjax.integrity_of(tgz))
    target = mathjax.unpack(tgz, tmp_path / "vendor")
    assert (target / "tex-chtml.js").read_bytes() == b"// mathjax"
    assert not (target / "source.ts").exists()
    assert mathjax.is_vendored(tmp_path / "vendor")
    assert mathjax.require_mathjax(tmp_path / "vendor") == target


def test_missing_or_outdated_mathjax_says_how_to_vendor_it(tmp_path: Path) -> None:
    with pytest.raises(mathjax.MathJaxError, match="set-up step"):
        mathjax.require_mathjax(tmp_path)
    (tmp_path / "mathjax").mkdir()
    (tmp_path / "mathjax" / "tex-chtml.js").write_text("old")
    (tmp_path / "mathjax" / "VERSION").write_text("3.0.0\n")
    assert not mathjax.is_vendored(tmp_path)
