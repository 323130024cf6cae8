"""Build the Jupyter Book from a finished pipeline: executed notebooks, figures, generated includes.

The chapters in `book/` are hand-written prose; every number they show comes from
`book/executed/_includes/*.md`, written here from the results tables and provenance records.
Executed notebooks are copied to `book/executed/` (numbered in run order, picked up by the
`_toc.yml` glob) and MathJax must already be vendored in `book/_vendor/` by the set-up step (offline build).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import yaml

from ctrip.data.schema import CP_NAMES, CP_UNITS
from ctrip.pipeline.cache import PipelineError, load_provenance, run_folder
from ctrip.pipeline.mathjax import MathJaxError, require_mathjax
from ctrip.pipeline.plan import Run


def _write(path: Path, data: str | bytes) -> None:
    """Write only when the content changes, so Sphinx rebuilds only the pages that changed."""
    data = data.encode() if isinstance(data, str) else data
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def table2_markdown(table: pd.DataFrame, oracle: pd.DataFrame, cps: list[str]) -> str:
    """Table 2 (MD and LoA with CIs) and, per method, Pearson r beside its modality's ceiling."""
    header = ["Method"] + [f"{cp} [{CP_UNITS[cp]}] {kind}" for cp in cps for kind in ("MD", "LoA")]
    rows = []
    for _, row in table.iterrows():
        cells = [str(row["label"])]
        for cp in cps:
            cells.append(f"{_fmt(row[f'{cp}_md'], 2)} [{_fmt(row[f'{cp}_md_ci_low'], 2)}, "
                         f"{_fmt(row[f'{cp}_md_ci_high'], 2)}] ±{_fmt(row[f'{cp}_md_seed_sd'], 2)}")  # fmt: skip
            cells.append(f"{_fmt(row[f'{cp}_loa_low'])} to {_fmt(row[f'{cp}_loa_high'])}")
        rows.append(cells)
    ceiling = (
        oracle.set_index(["method", "cp"])["pearson_r"] if len(oracle) else pd.Series(dtype=float)
    )
    rows_r = []
    for _, row in table.iterrows():
        cells = [str(row["label"])]
        for cp in cps:
            top = ceiling.get((row["method"], cp), np.nan)
            cells.append(f"{_fmt(row[f'{cp}_r'], 3)} (ceiling {_fmt(top, 3)})")
        rows_r.append(cells)
    n_test, n_seeds = int(table["n_test"].iloc[0]), int(table["n_seeds"].max())
    return (
        _md_table(header, rows)
        + f"\n*MD: mean over {n_seeds} seed(s) [95% CI over the {n_test} test subjects] "
        "± the seed standard deviation; LoA: MD ± 1.96 SD of the differences (prediction - reference).*\n\n"
        + _md_table(["Method"] + [f"{cp} r" for cp in cps], rows_r)
        + "\n*Pearson r on the test split, beside the oracle ceiling of the method's input modality.*\n"
    )


def cp18_markdown(summary: pd.DataFrame, labels: dict[str, str]) -> str:
    """All 18 CPs: per method MD (LoA) and r."""
    rows = []
    frame = summary.set_index(["method", "cp"])
    for cp in CP_NAMES:
        cells = [f"{cp} [{CP_UNITS[cp]}]"]
        for method in labels:
            m = frame.loc[(method, cp)]
            cells.append(
                f"{_fmt(m['md'], 2)} ({_fmt(m['loa_low'])}, {_fmt(m['loa_high'])}); r {_fmt(m['r'], 2)}"
            )
        rows.append(cells)
    return _md_table(["CP"] + list(labels.values()), rows)


def summary_markdown(table: pd.DataFrame, curves: pd.DataFrame, labels: dict[str, str], cps: list[str],
                     baseline: str, method: str) -> str:  # fmt: skip
    """Sentences that state, from the tables, who is best where and how C-TRIP compares."""
    t = table.set_index("method")
    lines = []
    for cp in cps:
        width = t[f"{cp}_loa_high"] - t[f"{cp}_loa_low"]
        best_md = t[f"{cp}_md"].abs().idxmin()
        best_w = width.idxmin()
        best_r = t[f"{cp}_r"].idxmax()
        rank = int(width.rank().loc[method])
        lines.append(
            f"- **{cp}**: smallest |MD| {labels[best_md]} ({_fmt(t.loc[best_md, f'{cp}_md'], 2)} {CP_UNITS[cp]}); "
            f"narrowest LoA {labels[best_w]} (width {_fmt(width[best_w])} {CP_UNITS[cp]}); highest r "
            f"{labels[best_r]} ({_fmt(t.loc[best_r, f'{cp}_r'], 3)}). {labels[method]} has LoA width "
            f"{_fmt(width[method])} (rank {rank} of {len(t)}) against {_fmt(width[baseline])} for {labels[baseline]}."
        )  # fmt: skip
    low = curves["fraction"].min()
    part = curves[np.isclose(curves["fraction"], low)].set_index(["method", "cp"])["r"]
    lines.append(
        f"- At the smallest fine-tuning fraction ({low:.0%}), Pearson r of {labels[method]} vs {labels[baseline]}: "
        + "; ".join(f"{cp} {_fmt(part.get((method, cp), np.nan), 3)} vs {_fmt(part.get((baseline, cp), np.nan), 3)}"
                    for cp in cps) + "."
    )  # fmt: skip
    return "\n".join(lines) + "\n"


def profile_markdown(settings: dict) -> str:
    """What the profile runs, beside the paper's sizes."""
    from ctrip.stages.config import make_config

    config, paper = settings["config"], make_config("paper")
    cohort = settings["cohort"]
    sizes = cohort.get("sizes") or {}
    loc, ploc = config["models"]["localizer"], paper["models"]["localizer"]
    ecg, pecg = config["models"]["ecg"], paper["models"]["ecg"]
    tab, ptab = config["models"]["tabular"], paper["models"]["tabular"]
    if cohort.get("path"):
        subjects, image, ecg_input = "(imported cohort)", "(the cohort's)", "(the cohort's)"
    else:
        subjects, side = str(cohort["n_subjects"]), sizes["image_size"]
        rate = ecg["rate_hz"] or sizes["ecg_sampling_rate_hz"]
        image = f"{side} x {side}"
        ecg_input = f"12 x {int(rate * sizes['ecg_seconds'])} ({rate:g} Hz)"
    rows = [
        ["subjects", subjects, "UK Biobank imaging visit"],
        ["localizer / CMR image", image, "224 x 224"],
        ["ECG as the model sees it", ecg_input, "12 x 5000 (500 Hz)"],
        ["ECG tokens", "per lead" if ecg["per_lead"] else "all leads per token", "per lead"],
        ["localizer ViT (dim / depth / heads, patch)", f"{loc['dim']} / {loc['depth']} / {loc['heads']}, {loc['patch_size']}",
         f"{ploc['dim']} / {ploc['depth']} / {ploc['heads']}, {ploc['patch_size']}"],
        ["ECG ViT (dim / depth / heads)", f"{ecg['dim']} / {ecg['depth']} / {ecg['heads']}", f"{pecg['dim']} / {pecg['depth']} / {pecg['heads']}"],
        ["tabular transformer (dim / depth)", f"{tab['dim']} / {tab['depth']}", f"{ptab['dim']} / {ptab['depth']}"],
        ["epochs Stage I / II / III (max)", " / ".join(str(config[s]["max_epochs"]) for s in ("stage1", "stage2", "stage3")),
         " / ".join(str(paper[s]["max_epochs"]) for s in ("stage1", "stage2", "stage3"))],
        ["batch size", str(config["stage1"]["batch_size"]), str(paper["stage1"]["batch_size"])],
        ["fine-tuning fractions", ", ".join(f"{f:g}" for f in settings["sweep"]["fractions"]), "0.01, 0.1, 1"],
        ["seeds", ", ".join(str(s) for s in settings["sweep"]["seeds"]), "not stated"],
    ]  # fmt: skip
    return _md_table(["", f"this book (profile `{settings['profile']}`)", "the paper"], rows)


def cohort_markdown(settings: dict) -> str:
    """Which cohort the book ran on, the Table 2 methods it left out and why, and whether the
    simulator-only parts (reference comparison, oracle ceilings, latents) apply."""
    from ctrip.pipeline.plan import cohort_facts, methods_for_cohort

    facts = cohort_facts(settings)
    _, left_out = methods_for_cohort(settings)
    if facts["simulated"]:
        text = "The cohort is simulated, so the data card compares it with published reference values and every method's Pearson r stands beside its modality's oracle ceiling.\n"
    else:
        text = ("The cohort is not simulated (it was imported), so the simulator-only parts are left out: the comparison "
                "with published reference values, the oracle ceilings and the latent variables.\n")  # fmt: skip
    if left_out:
        text += (
            "\nLeft out of Table 2 because the cohort lacks what they need: "
            + "; ".join(f"{name} ({reason})" for name, reason in left_out.items())
            + ".\n"
        )
    return text


def provenance_markdown(plan: list[Run], results_dir: Path, order: dict[str, str]) -> str:
    """One section per run: what it is, its key, hashes, time and parameters."""
    out = []
    rows = []
    for run in plan:
        record = load_provenance(run_folder(results_dir, run.name))
        if record is None:
            raise PipelineError(f"run {run.name} has no provenance record in {results_dir}")
        page = f"{{doc}}`{run.name} <{order[run.name]}>`" if run.name in order else run.name
        rows.append([page, record["notebook"] or "cohort synthesis", f"`{record['key'][:12]}`",
                     f"{record['seconds']:.1f}", record["started"]])  # fmt: skip
        params = {k: v for k, v in record["parameters"].items()}
        out.append(f"## {run.name}\n\n- key `{record['key']}`\n"
                   f"- notebook sha256 `{record['hashes']['notebook_sha256']}`\n"
                   f"- ctrip code sha256 `{record['hashes']['ctrip_code_sha256']}`\n"
                   f"- inputs: {', '.join(f'{n} `{k[:12]}`' for n, k in record['inputs'].items()) or 'none'}\n"
                   f"- git commit `{record['git']['commit']}` (uncommitted changes: {record['git']['dirty']})\n\n"
                   "```yaml\n" + yaml.safe_dump(params, sort_keys=False, width=100) + "```\n")  # fmt: skip
    first = load_provenance(run_folder(results_dir, plan[0].name)) or {}
    packages = ", ".join(f"{k} {v}" for k, v in (first.get("packages") or {}).items())
    head = _md_table(["run", "notebook", "key", "seconds", "started (UTC)"], rows)
    return head + f"\nPackages: {packages}.\n\n" + "\n".join(out)


def _copy_executed(plan: list[Run], results_dir: Path, executed: Path) -> dict[str, str]:
    """Executed notebooks into `executed/NN_<run>.ipynb`, their title naming the run."""
    order = {}
    for i, run in enumerate(r for r in plan if r.notebook):
        source = run_folder(results_dir, run.name) / f"{run.name}.ipynb"
        if not source.exists():
            raise PipelineError(
                f"run {run.name}: executed notebook {source} is missing; run the pipeline first"
            )
        book = nbformat.read(source, as_version=4)
        for cell in book.cells:
            if cell.cell_type == "markdown" and cell.source.startswith("# "):
                title, _, rest = cell.source.partition("\n")
                if run.name not in title:
                    cell.source = f"{title} (run `{run.name}`)\n{rest}"
                break
        name = f"{i + 1:02d}_{run.name}.ipynb"
        _write(executed / name, nbformat.writes(book))
        order[run.name] = f"executed/{name[:-6]}"
    return order


def write_includes(
    plan: list[Run], results_dir: Path, settings: dict, includes: Path, order: dict[str, str]
) -> None:
    """The generated parts of the chapters, from the result tables and provenance."""
    includes.mkdir(parents=True, exist_ok=True)
    labels = {m: spec.get("label", m) for m, spec in settings["methods"].items()}
    cps = list(settings["table2"]["cps"])
    table = pd.read_csv(results_dir / "table2.csv")
    summary = pd.read_csv(results_dir / "table2_cp18.csv")
    oracle_file = results_dir / "oracle.csv"  # simulated cohorts only
    oracle = pd.read_csv(oracle_file) if oracle_file.exists() else pd.DataFrame()
    curves = pd.read_csv(results_dir / "pearson_vs_fraction.csv")
    attention = settings["figures"]["attention"]
    _write(includes / "table2.md", table2_markdown(table, oracle, cps))
    _write(
        includes / "cp18.md",
        cp18_markdown(
            summary[np.isclose(summary["fraction"], settings["table2"]["fraction"])], labels
        ),
    )
    _write(
        includes / "summary.md",
        summary_markdown(table, curves, labels, cps, attention["baseline"], attention["method"]),
    )
    _write(includes / "profile.md", profile_markdown(settings) + "\n" + cohort_markdown(settings))
    _write(includes / "provenance.md", provenance_markdown(plan, results_dir, order))
    fractions = sorted(curves["fraction"].unique())
    rows = [[labels[m], cp] + [_fmt(curves[(curves.method == m) & (curves.cp == cp) & np.isclose(curves.fraction, f)]["r"].mean(), 3)
                               for f in fractions] for cp in cps for m in labels]  # fmt: skip
    _write(
        includes / "fractions.md",
        _md_table(["method", "CP"] + [f"{f:.0%}" for f in fractions], rows),
    )
    seeds = ", ".join(str(s) for s in settings["sweep"]["seeds"])
    _write(
        includes / "facts.md",
        f"profile `{settings['profile']}`, {int(table['n_test'].iloc[0])} test subjects, seeds {seeds}\n",
    )


def book_sources(root: Path, target: Path) -> Path:
    """A copy of the book's sources (config, table of contents, chapters, vendored MathJax) in
    `target`, without executed notebooks: the source of a book that is not the default one."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copyfile(root / name, target / name)
    shutil.rmtree(target / "book", ignore_errors=True)
    shutil.copytree(root / "book", target / "book",
                    ignore=shutil.ignore_patterns("executed", "_build"))  # fmt: skip
    return target


def build_book(
    root: Path, results_dir: Path, plan: list[Run], settings: dict, output: Path | None = None
) -> Path:
    """Assemble the executed notebooks and generated includes and run `jupyter-book build -W`.

    The default profile's book is built in place (`root/book/executed/`, `root/_build/html`).
    Any other profile, or an explicit `output`, gets its own copy of the sources in
    `<output>/source` (default output: `root/_build/<profile>`) and its html in
    `<output>/_build/html`, so a smoke or paper build never replaces the default book.
    """
    root, results_dir = Path(root).resolve(), Path(results_dir).resolve()
    try:
        require_mathjax(root / "book" / "_vendor")
    except MathJaxError as err:
        raise PipelineError(str(err)) from None
    if output is None and settings["profile"] != "default":
        output = root / "_build" / settings["profile"]
    source = root if output is None else book_sources(root, Path(output).resolve() / "source")
    executed = source / "book" / "executed"
    (executed / "figures").mkdir(parents=True, exist_ok=True)
    order = _copy_executed(plan, results_dir, executed)
    figures = sorted((results_dir / "figures").glob("*.png"))
    for png in figures:
        _write(executed / "figures" / png.name, png.read_bytes())
    write_includes(plan, results_dir, settings, executed / "_includes", order)
    _write(executed / "_includes" / "settings.json", json.dumps(settings, indent=2, default=str))
    keep = {executed / f"{order[r]}.ipynb".removeprefix("executed/") for r in order}
    keep |= {executed / "figures" / p.name for p in figures}
    for stale in [*executed.glob("*.ipynb"), *(executed / "figures").glob("*.png")]:
        if stale not in keep:  # from an earlier plan (e.g. a method since removed)
            stale.unlink()
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(source), "-W",
           "--keep-going"]  # fmt: skip
    if output is not None:
        cmd += ["--path-output", str(Path(output).resolve())]
    print(f"building the book: {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise PipelineError(f"jupyter-book build failed:\n{(done.stdout + done.stderr)[-4000:]}")
    return (Path(output).resolve() if output else root) / "_build" / "html"
