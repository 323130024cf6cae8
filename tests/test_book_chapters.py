"""The chapters state no number that comes from no result, and the book says
what was run: which profile, cohort and ablation, why the profile departs from the paper (from
the profile itself), and reproduce commands that load exactly the settings the book ran with."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from ctrip.config import SettingsError, load_settings, profile_why
from ctrip.pipeline.cache import REPO_DIR
from ctrip.pipeline.provenance_pages import (
    profile_markdown,
    profile_rows,
    run_arguments,
    run_facts_markdown,
)

# Numbers a chapter may state without a result, fixed by the paper's method, the data format or
# a word that holds a digit, not by a profile or a run.
FIXED_NUMBERS = (
    r"\bTables? \d+[a-z]?(?:,? (?:and )?\d+[a-z]?)*",  # the paper's table numbers
    r"\bFigs?\. \d+[A-Z]?",  # the paper's figure numbers
    r"\b18 (?:cardiac )?(?:phenotypes|CPs)",  # the paper's phenotype set (ctrip.data.schema)
    r"\b12-lead",  # the ECG of the data format
    r"\b95% (?:\w+ )?(?:confidence intervals?|CIs?)",  # every interval of the book is a 95% one
    r"\b(?:contains?|includes?) 0\b",  # the 0 a CI contains or not
    r"\b[12]-D\b",  # the kind of a model (2-D CNN, 1-D CNN)
    r"\bMICCAI \d{4}\b|\barXiv \d{4}\.\d{4,5}\b",  # the paper's venue and preprint
    r"\bsha256\b",
    r"\(N, \d+, [A-Z](?:, [A-Z])?\)",  # array shapes of the cohort format
    r"\b(?:fields? )?\d{5}(?:-\d{5})?\b",  # UK Biobank field ids
    r"\bL\+E\+T\w*|\bL_\w+|\bE_sup|\bT_sup|\bCMR_sup",  # method names
)
# A sentence that cites its published source may quote the source's numbers.
CITED = re.compile(r"\{cite\}|et al\.|\(\D{0,40}\b(?:19|20)\d\d[a-z]?\)|\b(?:19|20)\d\d;")
# Sections whose numbers are the simulator's documented constants (`ASSUMED(key)` in
# ctrip/data/synth, each with its reason) or a bibliography.
DOCUMENTED_SECTIONS = ("Magnitudes that stay assumed", "References")


def _prose(text: str) -> str:
    """A chapter's prose and captions: without front matter, code, pasted or included blocks,
    math blocks, labels and the documented sections."""
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
    kept, fence, skipping = [], None, False
    for line in text.splitlines():
        heading = re.match(r"^#+ (.*)$", line)
        if fence is None and heading:
            skipping = heading.group(1).strip() in DOCUMENTED_SECTIONS
        if skipping:
            continue
        opened = re.match(r"^(`{3,}|:{3,})\s*(\{[\w:-]+\})?(.*)$", line)
        if fence is None and opened:
            fence = (opened.group(1), opened.group(2) or "")
            if fence[1] in ("{figure}", "{table}"):
                kept.append(opened.group(3) if fence[1] == "{table}" else "")
            continue
        if fence is not None:
            if line.strip() == fence[0]:
                fence = None
            elif fence[1] == "{figure}" and not line.startswith(":"):
                kept.append(line)  # a figure's caption
            continue
        kept.append(line)
    prose = "\n".join(kept)
    prose = re.sub(r"\$\$.*?\$\$", " ", prose, flags=re.S)
    return re.sub(r"^\([\w-]+\)=$", " ", prose, flags=re.M)


def check_chapter_numbers(text: str) -> list[str]:
    """The sentences of a chapter's prose and captions that state a number from no result: a
    digit outside code, math, roles, pasted or included blocks, `FIXED_NUMBERS`, a documented
    section and a sentence that cites its published source."""
    found = []
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z*(`])|\n\s*\n", _prose(text)):
        if CITED.search(sentence):
            continue
        bare = re.sub(r"\{[\w:-]+\}`[^`]*`", " ", sentence)
        bare = re.sub(r"`[^`]*`", " ", bare)
        bare = re.sub(r"\$[^$]*\$", " ", bare)
        bare = re.sub(r"\]\([^)]*\)", "]", bare)
        for pattern in FIXED_NUMBERS:
            bare = re.sub(pattern, " ", bare)
        if re.search(r"\d", bare):
            found.append(" ".join(sentence.split()))
    return found


CHAPTERS = (
    "intro",
    "method",
    "data",
    "results",
    "screening",
    "ablation",
    "provenance",
    "reproduce",
)


def test_the_checker_finds_a_typed_number_and_passes_a_cited_or_pasted_one():
    typed = "The temperatures start at 0.1, as in the public code.\n"
    assert check_chapter_numbers(typed) == [typed.strip()]
    assert check_chapter_numbers("An LVEF below 50% {cite}`mcdonagh2021esc`.\n") == []
    assert check_chapter_numbers("Fig. 4. Coverage of Table 7 for the 18 phenotypes.\n") == []
    pasted = "```{glued} table5\n```\n\n```bash\nctrip run --jobs 2\n```\n"
    assert check_chapter_numbers(pasted) == []
    caption = "```{figure} x.png\n:width: 100%\n\nFig. 2B. UMAP (15 neighbours).\n```\n"
    assert check_chapter_numbers(caption) == ["UMAP (15 neighbours)."]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_chapter_states_a_number_that_comes_from_no_result(chapter: str):
    assert check_chapter_numbers((REPO_DIR / "book" / f"{chapter}.md").read_text()) == []


def test_fig_2b_caption_takes_the_umap_settings_from_the_run():
    results = (REPO_DIR / "book" / "results.md").read_text()
    caption = results[results.index("Fig. 2B.") :]
    caption = caption[: caption.index("```")]
    assert "{glue:text}`executed/umaps.ipynb::umap_settings:s`" in caption
    assert check_chapter_numbers(f"```{{figure}} x.png\n\n{caption}```\n") == []


@pytest.mark.parametrize("profile", ["default", "smoke", "paper"])
def test_every_departure_of_a_shipped_profile_says_why_in_the_profile(profile: str):
    settings = load_settings(profile)
    rows = {key for key, _, this, paper in profile_rows(settings) if this != paper}
    assert rows, "no departure from the paper"
    why = settings["why"]
    assert set(why) <= {key for key, *_ in profile_rows(settings)} | {"other"}
    assert "other" in why or rows <= set(why)
    assert "not stated in the profile" not in profile_markdown(settings)
    # the reasons cite benchmarks, not measurements copied into the profile
    text = (REPO_DIR / "ctrip" / "profiles" / f"{profile}.yaml").read_text()
    assert not re.search(r"\br \d|test LVM r|recall@10 \d", text)


def test_the_profile_table_prints_the_profile_s_own_reason():
    settings = load_settings("default")
    settings["why"] = {**settings["why"], "seeds": "three seeds, said here"}
    assert "| seeds | 0, 1, 2 | not stated | three seeds, said here |" in profile_markdown(settings)


def test_a_profile_why_is_a_mapping_of_text(tmp_path: Path):
    assert profile_why(None, tmp_path) == {}
    assert profile_why({"seeds": "a  reason\n split"}, tmp_path) == {"seeds": "a reason split"}
    for bad in (["a"], {"seeds": 3}, {"seeds": " "}):
        with pytest.raises(SettingsError, match="why: a mapping"):
            profile_why(bad, tmp_path / "p.yaml")


def test_the_run_facts_say_profile_cohort_ablation_and_what_a_smoke_book_shows():
    smoke = run_facts_markdown(load_settings("smoke"))
    assert "profile `smoke`, a cohort of 160 subjects simulated by the profile (seed 0)" in smoke
    assert "no ablation" in smoke and "only show that the pipeline runs" in smoke
    default = load_settings("default")
    assert "only show" not in run_facts_markdown(default)
    default["ablation"] = "t007"
    assert "ablation `t007`." in run_facts_markdown(default)


@pytest.mark.parametrize(
    "overrides",
    [[], ["stage2.temperatures.localizer-ecg=0.07", "sweep.seeds=[0, 1]"],
     ["figures.umap.metric=euclidean", "methods.L_sup.frozen=true"]],
)  # fmt: skip
def test_the_printed_run_arguments_load_the_settings_the_book_ran_with(overrides: list[str]):
    settings = load_settings("smoke", overrides)
    args = shlex.split(" ".join(run_arguments(settings)))
    assert args[:2] == ["--profile", "smoke"]
    again = load_settings(args[1], [v for k, v in zip(args, args[1:]) if k == "--set"])
    assert again == settings
    assert len([a for a in args if a == "--set"]) == len(overrides)


def test_each_executed_notebook_is_named_and_titled_by_its_run(tmp_path: Path):
    from ctrip.pipeline.book import run_title, write_toc
    from ctrip.pipeline.plan import build_plan

    plan = {run.name: run for run in build_plan(load_settings("smoke"))}
    assert run_title(plan["stage1_tabular_Tp"]) == "Stage I, tabular Tp"
    assert run_title(plan["stage2_L_E_T"]) == "Stage II, L_E_T"
    assert run_title(plan["stage3_L_sup"]) == "Stage III, L_sup"
    assert run_title(plan["reference_baselines"]) == "reference_baselines"
    (tmp_path / "book" / "executed").mkdir(parents=True)
    (tmp_path / "_toc.yml").write_text((REPO_DIR / "_toc.yml").read_text())
    order = {name: f"executed/{name}" for name in plan if plan[name].notebook}
    toc = write_toc(tmp_path, order).read_text()
    listed = re.findall(r"file: book/executed/(\S+)", toc)
    assert listed == list(order) and "glob" not in toc and "file: book/results" in toc
