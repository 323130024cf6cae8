"""Hardening of `ctrip run`, `ctrip cohort synth` and the book (issue 29): never delete what
the program did not make, one writer per cohort folder, Ctrl-C stops a run cleanly, damaged
provenance, a full disk named, `--verify`, portable reproduce pages, `python -m ctrip`."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctrip.cli import main as cli_main
from ctrip.config import load_settings
from ctrip.data.cohort import Cohort, CohortError
from ctrip.pipeline.book import (
    book_sources,
    check_book_output,
    record_book_files,
)
from ctrip.pipeline.cache import REPO_DIR, PipelineError, run_folder
from ctrip.pipeline.plan import build_plan
from ctrip.pipeline.provenance_pages import reproduce_markdown
from ctrip.pipeline.runner import plan_status, run_plan
from tests.factories import make_tiny_cohort
from tests.test_hardening_cohort import _cli_error
from tests.test_pipeline import executed, notebooks, tiny_plan, write_notebook  # noqa: F401

PYTHON_ENV = {"PYTHONPATH": str(REPO_DIR), "PATH": "/usr/bin:/bin"}


def quiet(_: str) -> None:
    pass


# ---- item 1: --overwrite replaces only a cohort of this project's format -------------------------


def _kubernetes(path: Path) -> Path:
    path.mkdir()
    (path / "manifest.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n")
    (path / "README.txt").write_text("how to deploy")
    (path / "values.json").write_text('{"replicas": 3}')
    return path


def test_overwrite_refuses_a_folder_whose_manifest_is_not_a_cohorts(tmp_path: Path, capsys):
    k8s = _kubernetes(tmp_path / "k8s")
    before = {p.name: p.read_bytes() for p in k8s.iterdir()}
    line = _cli_error(
        ["cohort", "synth", "--n", "6", "--out", str(k8s), "--overwrite", "--profile", "smoke",
         "--no-progress"],
        capsys,
    )  # fmt: skip
    assert str(k8s) in line and "refusing to delete" in line and "manifest.yaml" in line
    assert {p.name: p.read_bytes() for p in k8s.iterdir()} == before


@pytest.mark.parametrize(
    "manifest",
    ["[1, 2, 3]\n", "format_version: 1\n", "format_version: 2\nsource: x\nn_subjects: 3\ntable: {}\n",
     "{{{ not yaml\n", "format_version: 1\nsource: x\nn_subjects: 3\ntable: subjects.parquet\n"],
)  # fmt: skip
def test_overwrite_refuses_a_manifest_of_another_shape(tmp_path: Path, manifest: str):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "manifest.yaml").write_text(manifest)
    with pytest.raises(CohortError, match="not a cohort folder.*refusing to delete"):
        make_tiny_cohort(folder, overwrite=True)
    assert (folder / "manifest.yaml").read_text() == manifest


def test_overwrite_refuses_a_cohort_holding_a_file_its_manifest_does_not_name(tmp_path: Path):
    cohort = make_tiny_cohort(tmp_path / "c")
    (cohort / "notes.txt").write_text("mine")
    with pytest.raises(CohortError, match=r"c: is not a cohort folder \(notes.txt\)"):
        make_tiny_cohort(cohort, overwrite=True, seed=1)
    (cohort / "notes.txt").unlink()
    make_tiny_cohort(cohort, overwrite=True, seed=1)  # a cohort alone is replaced
    assert Cohort.open(cohort).manifest["recipe"]["seed"] == 1


# ---- item 14: provenance.json of the wrong shape is damaged ---------------------------------------


@pytest.mark.parametrize(
    "damage",
    ["[1, 2, 3]", '{"hashes": "oops"}', '"text"', '{"key": 5, "hashes": {"outputs_sha256": [1]}}',
     '{"hashes": {"outputs_sha256": {"value.txt": 7}}}',
     '{"hashes": {"outputs_sha256": {"value.txt": "ab"}}, "outputs_stat": {"value.txt": "x"}}'],
)  # fmt: skip
def test_provenance_of_the_wrong_shape_is_damaged(tmp_path, notebooks, tiny_cohort, damage):  # noqa: F811
    results = tmp_path / "results"
    plan = tiny_plan(tiny_cohort)
    run_plan(plan, results, notebooks_dir=notebooks, progress=False, log=quiet)
    (run_folder(results, "a") / "provenance.json").write_text(damage)
    status = plan_status(plan, results, notebooks)
    assert status["a"] == "to run (its provenance record is damaged)"
    assert status["b"].startswith("to run (it reads a")
    assert executed(run_plan(plan, results, notebooks_dir=notebooks, progress=False, log=quiet)) == {
        "a", "b"}  # fmt: skip


# ---- item 21: python -m ctrip ----------------------------------------------------------------------


def test_python_dash_m_ctrip_is_the_command_line(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "ctrip", "cohort", "validate", str(tmp_path / "none")],
                          capture_output=True, text=True, env=PYTHON_ENV, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "none" in done.stderr
    helped = subprocess.run([sys.executable, "-m", "ctrip", "--help"], capture_output=True,
                            text=True, env=PYTHON_ENV, cwd=tmp_path)  # fmt: skip
    assert helped.returncode == 0 and "cohort" in helped.stdout and "run" in helped.stdout


# ---- item 4: one writer per cohort folder ---------------------------------------------------------


def test_a_second_synth_into_the_same_folder_is_refused(tmp_path: Path, capsys):
    out, lock = tmp_path / "c", tmp_path / ".c.lock"
    first = subprocess.Popen(
        [sys.executable, "-m", "ctrip", "cohort", "synth", "--n", "300", "--seed", "1", "--out",
         str(out), "--profile", "smoke", "--no-progress"],
        env=PYTHON_ENV, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while f"pid {first.pid} " not in (lock.read_text() if lock.exists() else ""):
        assert first.poll() is None and time.monotonic() < deadline, "the first synth never locked"
        time.sleep(0.05)
    line = _cli_error(
        ["cohort", "synth", "--n", "6", "--seed", "2", "--out", str(out), "--overwrite",
         "--profile", "smoke", "--no-progress"],
        capsys,
    )  # fmt: skip
    assert str(out) in line and "being written by another ctrip cohort synth" in line
    assert f"pid {first.pid}" in line
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert f"wrote 300 simulated subjects to {out}" in stdout
    cohort = Cohort.validate(out)
    assert cohort.n == 300 and cohort.manifest["recipe"]["seed"] == 1
    # the lock is released with its holder: the next writer gets the folder
    assert cli_main(["cohort", "synth", "--n", "6", "--seed", "2", "--out", str(out),
                     "--overwrite", "--profile", "smoke", "--no-progress"]) == 0  # fmt: skip
    assert Cohort.open(out).manifest["recipe"]["seed"] == 2


# ---- item 16: a full disk names the run and the file -----------------------------------------------


def test_a_full_disk_names_the_run_and_the_file(tmp_path, notebooks, tiny_cohort, monkeypatch):  # noqa: F811
    results = tmp_path / "results"
    write_text = Path.write_text

    def full_disk(self: Path, *args, **kwargs):
        if self.name == "provenance.json" and ".tmp-a-" in str(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() says: no file
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    plan = tiny_plan(tiny_cohort)
    with pytest.raises(PipelineError) as caught:
        run_plan(plan, results, notebooks_dir=notebooks, progress=False, log=quiet)
    message = str(caught.value)
    assert message.startswith("run a: cannot write ") and "\n" not in message
    assert message.endswith("/provenance.json: No space left on device")
    assert not run_folder(results, "a").exists()  # not published as done
    monkeypatch.setattr(Path, "write_text", write_text)
    assert plan_status(plan, results, notebooks)["a"] == "to run (never run)"
    assert "a" in executed(
        run_plan(plan, results, notebooks_dir=notebooks, progress=False, log=quiet)
    )


# ---- item 6: Ctrl-C stops a plan -------------------------------------------------------------------

# `ctrip run` on the tiny plan of tests/test_pipeline.py with a slow first run: the command line
# of a real profile, with the plan and the notebooks swapped in.
INTERRUPTED_RUN = """
import functools, sys
from pathlib import Path
import yaml
import ctrip, ctrip.pipeline.plan as plan_module, ctrip.pipeline.runner as runner
from ctrip.cli import main
from ctrip.pipeline.plan import Run

cohort, notebooks, marker = sys.argv[1:4]
plan = [Run("cohort", None, {"cohort": {"path": cohort}}),
        Run("a", "slow.ipynb", {"marker": marker}, needs=["cohort"]),
        Run("b", "add.ipynb", {"y": 1}, inputs={"source": "a"}, needs=["cohort", "a"]),
        Run("c", "write.ipynb", {"x": 5}, needs=["cohort"])]
plan_module.build_plan = lambda settings: plan
runner.run_plan = functools.partial(runner.run_plan, notebooks_dir=Path(notebooks))
runner.plan_status = functools.partial(runner.plan_status, notebooks_dir=Path(notebooks))
# the smoke profile without the ablations it declares: this plan is the toy one above
profile = yaml.safe_load((Path(ctrip.__file__).parent / "profiles" / "smoke.yaml").read_text())
profile.pop("ablations", None)
profile_file = Path(marker).parent / "smoke_without_ablations.yaml"
profile_file.write_text(yaml.safe_dump(profile))
sys.exit(main(["run", "--profile", str(profile_file), "--jobs", "1", "--no-progress",
               *sys.argv[4:]]))
"""


def _ctrip_run(tmp_path: Path, cohort: Path, notebooks: Path, *args: str) -> subprocess.Popen:  # noqa: F811
    script = tmp_path / "interrupted_run.py"
    script.write_text(INTERRUPTED_RUN)
    return subprocess.Popen(
        [sys.executable, str(script), str(cohort), str(notebooks), str(tmp_path / "started"), *args],
        env=PYTHON_ENV, cwd=REPO_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_ctrl_c_stops_starting_runs_ends_the_current_one_and_a_rerun_resumes(
    tmp_path,
    notebooks,  # noqa: F811
    tiny_cohort,
):
    write_notebook(notebooks / "slow.ipynb", "out_dir = ''\nmarker = ''",
                   "import time\nfrom pathlib import Path\nPath(out_dir, 'value.txt').write_text('1')\n"
                   "Path(marker).write_text('started')\ntime.sleep(300)")  # fmt: skip
    results = tmp_path / "results"
    process = _ctrip_run(tmp_path, tiny_cohort, notebooks, "--results", str(results))
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").exists():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.1)
        t0 = time.monotonic()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()  # a no-op when it ended
    assert process.returncode == 130, stdout + stderr
    assert time.monotonic() - t0 < 30  # the sleeping notebook was ended, not waited for
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("ctrip run: interrupted (Ctrl-C): a ended before finishing, ")
    assert "2 not started (b, c)" in last and "re-run" in last
    assert "running write.ipynb" not in stdout and "running add.ipynb" not in stdout
    runs = results / "runs"
    assert not any(runs.glob(".tmp-*")) and not (runs / "a").exists()
    assert not (runs / "b").exists() and not (runs / "c").exists()
    assert (runs / "cohort" / "provenance.json").exists()  # finished before Ctrl-C: kept

    dry = _ctrip_run(tmp_path, tiny_cohort, notebooks, "--results", str(results), "--dry-run")
    listing, _ = dry.communicate(timeout=60)
    assert dry.returncode == 0
    status = dict(line.split(None, 1) for line in listing.strip().splitlines())
    assert status == {"cohort": "up to date", "a": "to run (never run)",
                      "b": "to run (never run)", "c": "to run (never run)"}  # fmt: skip


# ---- item 19: what the up-to-date check trusts, and --verify ---------------------------------------


def test_verify_finds_a_flipped_byte_that_size_and_mtime_hide(tmp_path, notebooks, tiny_cohort):  # noqa: F811
    results = tmp_path / "results"
    plan = tiny_plan(tiny_cohort)
    run_plan(plan, results, notebooks_dir=notebooks, progress=False, log=quiet)
    output = run_folder(results, "a") / "value.txt"
    st = output.stat()
    output.write_bytes(bytes([output.read_bytes()[0] ^ 1]))  # "1" becomes "0"
    os.utime(output, ns=(st.st_atime_ns, st.st_mtime_ns))
    # the default check trusts an output with its recorded size and modification time ...
    assert plan_status(plan, results, notebooks)["a"] == "up to date"
    # ... --verify hashes every one
    status = plan_status(plan, results, notebooks, verify=True)
    assert status["a"] == "to run (output value.txt changed (sha256))"
    assert status["b"].startswith("to run (it reads a")
    assert executed(run_plan(plan, results, notebooks_dir=notebooks, progress=False, log=quiet,
                             verify=True)) == {"a", "b"}  # fmt: skip
    assert output.read_text() == "1"
    assert plan_status(plan, results, notebooks, verify=True)["a"] == "up to date"


def test_run_help_says_what_the_up_to_date_check_trusts(capsys):
    with pytest.raises(SystemExit):
        cli_main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--verify" in text and "recorded size and modification time is trusted" in text


# ---- item 20: the reproduce page names no folder of the machine that built it ----------------------


@pytest.mark.parametrize("where", ["outside", "inside"])
def test_the_reproduce_page_gives_relative_paths(tmp_path, where):
    settings = load_settings("smoke")
    plan = build_plan(settings)
    if where == "outside":
        results, named = tmp_path / "elsewhere" / "results", '"$RESULTS"'
    else:
        results, named = REPO_DIR / "results" / "smoke-elsewhere", "results/smoke-elsewhere"
    text = reproduce_markdown(plan, results, settings)  # the parameters are in the commands
    assert str(tmp_path) not in text and str(REPO_DIR) not in text and str(results) not in text
    runs = [r for r in plan if r.notebook]
    assert text.count(f"mkdir -p {named}/runs/remake-") == len(runs)
    assert f"--results {named} --book" in text
    assert ("`RESULTS` set to this book's results folder" in text) == (where == "outside")


# ---- item 3: the book build replaces only what it made ---------------------------------------------


def test_book_output_holding_the_users_files_is_refused_before_any_work(tmp_path, capsys):
    book, results = tmp_path / "mybook", tmp_path / "results"
    (book / "source" / "book").mkdir(parents=True)
    (book / "source" / "book" / "notes.md").write_text("my notes")
    line = _cli_error(["run", "--profile", "smoke", "--results", str(results), "--book",
                       "--book-output", str(book), "--no-progress"], capsys)  # fmt: skip
    assert str(book) in line and "source/book/notes.md" in line and "did not make" in line
    assert (book / "source" / "book" / "notes.md").read_text() == "my notes"
    assert not (results / "runs").exists()  # refused before any run


def test_a_folder_the_book_build_made_is_rebuilt_until_the_user_adds_a_file(tmp_path):
    book = tmp_path / "mybook"
    check_book_output(book)  # missing
    book.mkdir()
    check_book_output(book)  # empty
    book_sources(REPO_DIR, book / "source")
    record_book_files(book)
    (book / "_build" / "html").mkdir(parents=True)  # jupyter-book's own output
    (book / "_build" / "html" / "index.html").write_text("<html>")
    check_book_output(book)  # made by the build: fine to rebuild
    (book / "source" / "book" / "notes.md").write_text("my notes")
    (book / "todo.txt").write_text("mine too")
    with pytest.raises(
        ValueError, match=r"mybook: holds files .*\(source/book/notes.md, todo.txt\)"
    ):
        check_book_output(book)
    # the profile's own _build/<profile> from before builds kept a record is the build's
    (tmp_path / "legacy" / "source" / "book").mkdir(parents=True)
    (tmp_path / "legacy" / "source" / "_config.yml").write_text("title: x")
    check_book_output(tmp_path / "legacy", unrecorded_ok=True)
    with pytest.raises(ValueError, match=r"legacy: holds files .*\(source/_config.yml\)"):
        check_book_output(tmp_path / "legacy")
