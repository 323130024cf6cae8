"""What the book says of the run itself: the facts every results page opens with (profile,
cohort, ablation), the profile's departures from the paper with the profile's own `why:`, the
provenance page and the reproduce page, whose commands remake this book's numbers as printed.

The results' tables and readings are not written here: each notebook glues its own
(`ctrip.analysis.tables.publish`) and the chapters paste them (```{glued} key```).
"""

from __future__ import annotations

import fnmatch
import os
import shlex
from pathlib import Path
from typing import Any

import yaml

from ctrip.analysis import tables
from ctrip.pipeline.cache import REPO_DIR, PipelineError, load_provenance, run_folder
from ctrip.pipeline.plan import Run, cohort_facts, methods_for_cohort
from ctrip.pipeline.timings import timings_markdown

# What each numbered table and figure of the book is made by (run names of the plan).
MADE_BY = {
    "Table 2": ["table2"], "Table 3": ["reference_baselines", "table2"],
    "Table 3b": ["reference_baselines", "table2"], "Table 3c": ["reference_baselines", "table2"],
    "Table 3d": ["reference_baselines", "table2"],
    "Table 4": ["table2"], "Table 4b": ["table2"],
    "Table 5": ["stage2_*", "umaps"], "Table 6": ["table2"], "Fig. 2A": ["attention_maps"],
    "Fig. 2B": ["umaps"], "Fig. 3": ["fraction_curves"], "Fig. 4": ["screening"],
    "Fig. 5": ["screening"], "Table 7": ["screening"], "Table 8": ["screening"],
}  # fmt: skip

# Profiles whose numbers only show that the pipeline runs (tiny models, a tiny cohort).
PIPELINE_CHECK_PROFILES = ("smoke",)


def _shown_path(path: Path, variable: str) -> str:
    """`path` as a command run from the repository root names it: relative when inside the
    repository, else `"$VARIABLE"` (the page names no folder of the machine that built it)."""
    path = Path(path).resolve()
    if path.is_relative_to(REPO_DIR):
        return os.path.relpath(path, REPO_DIR)
    return f'"${variable}"'


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        return {
            k: v for key, sub in tree.items() for k, v in _leaves(sub, f"{prefix}{key}.").items()
        }
    return {prefix.rstrip("."): tree}


def _yaml_value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text.removesuffix("...").strip()


def run_arguments(settings: dict) -> list[str]:
    """The `ctrip run` arguments that load exactly `settings`: the profile, `--cohort` for an
    imported cohort, `--ablation` when the settings name one, and a `--set` for every value that
    differs from what the profile (and cohort) give."""
    from ctrip.config import load_settings

    cohort = settings["cohort"].get("path")
    base = load_settings(settings["profile"], cohort=cohort)
    skip = {"why", "ablation", "profile", "cohort.path"}
    have, given = _leaves(settings), _leaves(base)
    args = ["--profile", settings["profile"]]
    if cohort:
        args += ["--cohort", _shown_path(Path(cohort), "COHORT")]
    if settings.get("ablation"):
        args += ["--ablation", str(settings["ablation"])]
    for key, value in have.items():
        if key not in skip and (key not in given or given[key] != value):
            args += ["--set", shlex.quote(f"{key}={_yaml_value(value)}")]
    return args


def _cohort_words(settings: dict) -> str:
    cohort = settings["cohort"]
    if not cohort.get("path"):
        return (f"a cohort of {cohort['n_subjects']} subjects simulated by the profile "
                f"(seed {cohort['seed']})")  # fmt: skip
    manifest_file = Path(cohort["path"]) / "manifest.yaml"
    manifest = yaml.safe_load(manifest_file.read_text()) or {} if manifest_file.exists() else {}
    source = manifest.get("source") or "not recorded"
    kind = "a simulated cohort" if source == "synthetic" else "an imported cohort"
    return f"{kind}, `{Path(cohort['path']).name}` (source: {source})"


def run_facts_markdown(settings: dict) -> str:
    """The note every results page opens with: which profile, cohort and ablation the numbers
    come from, which methods the cohort could not run, and, for a pipeline-check profile, that
    the numbers only show that the pipeline runs."""
    ablation = settings.get("ablation")
    text = (f"*This build: profile `{settings['profile']}`, {_cohort_words(settings)}, "
            f"seeds {', '.join(str(s) for s in settings['sweep']['seeds'])}; "
            + (f"ablation `{ablation}`." if ablation else "no ablation.") + "*")  # fmt: skip
    _, left_out = methods_for_cohort(settings)
    if left_out:
        text += ("\n\n*Left out of every table and figure of this book because the cohort lacks "
                 "what they need: " + "; ".join(f"{n} ({r})" for n, r in left_out.items()) + ".*")  # fmt: skip
    if settings["profile"] in PIPELINE_CHECK_PROFILES:
        text += (f"\n\n```{{important}}\nThe `{settings['profile']}` profile's numbers only show "
                 "that the pipeline runs: its models are tiny and trained for a few epochs on a "
                 "cohort too small to tell methods apart. They are no finding, whichever way "
                 "they point.\n```")  # fmt: skip
    return text + "\n"


def profile_rows(settings: dict) -> list[tuple[str, str, str, str]]:
    """(key, what, this book's value, the paper's value) for every setting the book states
    beside the paper; `key` is what the profile's `why:` names."""
    from ctrip.config import make_config, run_config

    config, paper = settings["config"], make_config("paper")
    cohort, sizes = settings["cohort"], settings["cohort"].get("sizes") or {}
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

    def stem(model: dict) -> str:
        return f"{model['stem']} stem, {model['pool']} pooling"

    def flag(stage: str, cfg: dict, key: str) -> str:
        return "on" if cfg[stage].get(key) else "off"

    def image_augment(stage: str, cfg: dict) -> str:
        kinds = [name for key, name in (("augment", "crop, rotation, zoom"),
                                        ("augment_rigid", "rotation, shift")) if cfg[stage].get(key)]  # fmt: skip
        return " + ".join(kinds) or "off"

    def per_stage(cfg: dict, key: str) -> str:
        return " / ".join(str(cfg[s][key]) for s in ("stage1", "stage2", "stage3"))

    def ecg_stage1(cfg: dict) -> str:
        """The ECG autoencoder's own Stage I, as its run reads it (`run_config`): epochs / batch /
        lr, its decoder's depth, ALiBi."""
        run = run_config(cfg, "stage1", ["ecg"])
        stage, model = run["stage1"], run["models"]["ecg"]
        alibi = ", ALiBi" if model.get("decoder_alibi") else ""
        return (f"{stage['max_epochs']} / {stage['batch_size']} / {stage['lr']:g}, decoder depth "
                f"{model['decoder_depth']}{alibi}")  # fmt: skip

    def vit(m: dict, patch: bool = False) -> str:
        return f"{m['dim']} / {m['depth']} / {m['heads']}" + (
            f", {m['patch_size']}" if patch else ""
        )

    return [
        ("subjects", "subjects", subjects, "UK Biobank imaging visit"),
        ("image_size", "localizer / CMR image", image, "224 x 224"),
        ("ecg_input", "ECG as the model sees it", ecg_input, "12 x 5000 (500 Hz)"),
        ("ecg_tokens", "ECG tokens", "per lead" if ecg["per_lead"] else "all leads per token", "per lead"),
        ("localizer_vit", "localizer ViT (dim / depth / heads, patch)", vit(loc, True), vit(ploc, True)),
        ("localizer_stem", "image patch embedding and pooling", stem(loc), stem(ploc)),
        ("ecg_vit", "ECG ViT (dim / depth / heads)", vit(ecg), vit(pecg)),
        ("tabular", "tabular transformer (dim / depth)", f"{tab['dim']} / {tab['depth']}",
         f"{ptab['dim']} / {ptab['depth']}"),
        ("epochs", "epochs Stage I / II / III (max)", per_stage(config, "max_epochs"),
         per_stage(paper, "max_epochs")),
        ("ecg_stage1", "ECG autoencoder's Stage I (epochs / batch / lr, decoder)",
         ecg_stage1(config), ecg_stage1(paper)),
        ("patience", "early-stopping patience Stage I / II / III (epochs)",
         per_stage(config, "patience"), per_stage(paper, "patience")),
        ("batch_size", "batch size", str(config["stage1"]["batch_size"]), str(paper["stage1"]["batch_size"])),
        ("lr_encoder", "Stage III learning rate of a pre-trained encoder",
         f"{config['stage3']['lr_encoder']:g}", f"{paper['stage3']['lr_encoder']:g}"),
        ("lr_encoder_scratch", "Stage III learning rate of an encoder trained from scratch",
         f"{config['stage3']['lr_encoder_scratch']:g}", "not stated"),
        ("image_augment", "image augmentation in Stage II / III",
         f"{image_augment('stage2', config)} / {image_augment('stage3', config)}",
         f"{image_augment('stage2', paper)} / {image_augment('stage3', paper)}"),
        ("ecg_shift", "ECG time shift in Stage II / III",
         f"{flag('stage2', config, 'augment_ecg')} / {flag('stage3', config, 'augment_ecg')}",
         f"{flag('stage2', paper, 'augment_ecg')} / {flag('stage3', paper, 'augment_ecg')}"),
        ("fractions", "fine-tuning fractions", ", ".join(f"{f:g}" for f in settings["sweep"]["fractions"]),
         "0.01, 0.1, 1"),
        ("seeds", "seeds", ", ".join(str(s) for s in settings["sweep"]["seeds"]), "not stated"),
    ]  # fmt: skip


def profile_markdown(settings: dict) -> str:
    """Every way the profile departs from the paper, with the reason its `why:` gives (the
    entry `other` for a departure without its own; none: "not stated in the profile")."""
    why = settings.get("why") or {}
    rows = [[what, this, paper, why.get(key, why.get("other", "not stated in the profile"))]
            for key, what, this, paper in profile_rows(settings) if this != paper]  # fmt: skip
    header = ["", f"this book (profile `{settings['profile']}`)", "the paper", "why"]
    return tables.md_table(header, rows)


def cohort_markdown(settings: dict) -> str:
    """Whether the simulator-only parts (reference comparison, oracle ceilings, latents) apply."""
    if cohort_facts(settings)["simulated"]:
        return ("The cohort is simulated, so the data card compares it with published reference "
                "values and every method's Pearson r stands beside its modality's oracle ceiling.\n")  # fmt: skip
    return ("The cohort is not simulated (it was imported), so the simulator-only parts are left "
            "out: the comparison with published reference values, the oracle ceilings and the "
            "latent variables.\n")  # fmt: skip


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
        out.append(f"### {run.name}\n\n- key `{record['key']}`\n"
                   f"- notebook sha256 `{record['hashes']['notebook_sha256']}`\n"
                   f"- ctrip code sha256 `{record['hashes']['ctrip_code_sha256']}`\n"
                   f"- inputs: {', '.join(f'{n} `{k[:12]}`' for n, k in record['inputs'].items()) or 'none'}\n"
                   f"- git commit `{record['git']['commit']}` (uncommitted changes: {record['git']['dirty']})\n\n"
                   "```yaml\n" + yaml.safe_dump(params, sort_keys=False, width=100) + "```\n")  # fmt: skip
    first = load_provenance(run_folder(results_dir, plan[0].name)) or {}
    packages = ", ".join(f"{k} {v}" for k, v in (first.get("packages") or {}).items())
    head = tables.md_table(["run", "notebook", "key", "seconds", "started (UTC)"], rows)
    return head + f"\nPackages: {packages}.\n\n" + "\n".join(out)


def _anchor(name: str) -> str:
    return f"run-{name.replace('_', '-').replace('+', '-').lower()}"


def reproduce_markdown(plan: list[Run], results_dir: Path, settings: dict) -> str:
    """For every table and figure: the run that made it, its outputs' sha256, and the commands
    that remake it, runnable as printed from the repository root: `ctrip run` with the arguments
    that load this book's settings (profile, cohort, ablation, `--set` overrides) for the whole
    chain, or papermill on that one notebook with the run's full parameters, in a fresh folder
    beside the runs it reads."""
    from ctrip.pipeline.runner import notebook_parameters

    results_rel = _shown_path(results_dir, "RESULTS")
    by_name = {run.name: run for run in plan}
    sections = []
    for item, patterns in MADE_BY.items():
        names = [n for pat in patterns for n in by_name if fnmatch.fnmatch(n, pat)]
        if names:
            sections.append(
                f"- **{item}**: " + ", ".join(f"{{ref}}`{n} <{_anchor(n)}>`" for n in names)
            )
    out = ["## Which run made what\n", "\n".join(sections), "\n\n## Remaking one run\n"]
    variables = [f"`{v}` set to {w}" for v, w, shown in (
        ("RESULTS", f"this book's results folder (`{Path(results_dir).name}`)", results_rel),
        ("COHORT", "the cohort folder it ran on", " ".join(run_arguments(settings))),
    ) if f'"${v}"' in shown]  # fmt: skip
    if variables:
        out.append("Folders outside the repository are named by variables: run the commands "
                   "below from the repository root with " + " and ".join(variables) + ".\n")  # fmt: skip
    command = " ".join(
        [".venv/bin/ctrip", "run", *run_arguments(settings), "--results", results_rel]
    )
    out.append(
        "Everything, from the cohort up, with the cache skipping what is up to date (add "
        "`--dry-run` to list what it would run: every run is up to date for the results of this "
        f"book):\n\n```bash\n{command} --book\n```\n\n"
        "One notebook on its own, with exactly the parameters it ran with, in a new folder beside "
        "the runs it reads (so its relative inputs resolve) and the thread count it ran with; its "
        "outputs' sha256 must equal those listed:\n"
    )  # fmt: skip
    notebooks_dir = REPO_DIR / "notebooks"
    for run in plan:
        if not run.notebook:
            continue
        record = load_provenance(run_folder(results_dir, run.name)) or {}
        params = notebook_parameters(run, notebooks_dir / run.notebook, results_dir, plan)
        remake = f"{results_rel}/runs/remake-{run.name}"
        env = " ".join(f"{v}={int(run.threads)}"
                       for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"))  # fmt: skip
        outputs = (record.get("hashes") or {}).get("outputs_sha256") or {}
        listed = ("\n".join(f"  - `{name}`: `{digest}`" for name, digest in sorted(outputs.items()))
                  or "  - (none recorded)")  # fmt: skip
        parameters = yaml.safe_dump(params, sort_keys=False, width=100)
        out.append(
            f"\n({_anchor(run.name)})=\n### {run.name}\n\nKey `{record.get('key', '?')[:16]}`.\n\n"
            f"```bash\nmkdir -p {remake}\ncat > {remake}/parameters.yaml <<'EOF'\n{parameters}EOF\n"
            f"{env} .venv/bin/papermill notebooks/{run.notebook} {remake}/{run.name}.ipynb -k ctrip "
            f"--cwd {remake} -f {remake}/parameters.yaml\n```\n\nOutputs:\n\n{listed}\n"
        )  # fmt: skip
    return "\n".join(out) + "\n"


def write_pages(plan: list[Run], results_dir: Path, settings: dict, includes: Path,
                order: dict[str, str], write: Any) -> None:  # fmt: skip
    """The run's own pages and notes into `includes` (with `write(path, text)`): the facts every
    results page opens with, the profile's departures, provenance and the reproduce page."""
    write(includes / "run_facts.md", run_facts_markdown(settings))
    write(includes / "profile.md", profile_markdown(settings) + "\n" + cohort_markdown(settings))
    write(includes / "provenance.md", provenance_markdown(plan, results_dir, order))
    write(includes / "timings.md", timings_markdown(plan, results_dir))
    write(includes / "reproduce.md", reproduce_markdown(plan, results_dir, settings))
