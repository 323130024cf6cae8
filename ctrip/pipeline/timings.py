"""Where a plan's time went: each run's wall and CPU seconds, and the plan's critical path.

Read from the provenance each run records (`seconds`: wall time of its execution; `cpu_seconds`:
CPU time of its kernel and the kernel's children, absent in runs recorded before it was; and
`started`). The critical path is the chain of runs, each reading the one before it, with the
largest sum of wall seconds: no number of cores makes the plan shorter than it, so time saved
elsewhere does not shorten the plan. A CPU share below 1 per kernel thread on a run means its
kernel waited (for the disk, for another kernel on a shared core) or did not use its threads.

    from ctrip.pipeline.timings import timings_markdown
    print(timings_markdown(plan, results_dir))
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from ctrip.pipeline.cache import load_provenance, run_folder
from ctrip.pipeline.plan import Run


def critical_path(plan: list[Run], seconds: Mapping[str, float]) -> list[str]:
    """The chain of runs through `needs` with the largest sum of `seconds` (a run missing from
    `seconds` counts 0), from its first run to its last."""
    by_name = {run.name: run for run in plan}
    best: dict[str, tuple[float, list[str]]] = {}

    def longest(name: str) -> tuple[float, list[str]]:
        if name not in best:
            upstream = [longest(n) for n in by_name[name].needs if n in by_name]
            total, chain = max(upstream, key=lambda item: item[0], default=(0.0, []))
            best[name] = (total + float(seconds.get(name, 0.0)), [*chain, name])
        return best[name]

    return max((longest(run.name) for run in plan), key=lambda item: item[0], default=(0.0, []))[1]


def run_timings(plan: list[Run], results_dir: str | Path) -> pd.DataFrame:
    """One row per run of `plan` that has a provenance record, in plan order: run, step,
    started, wall_s, cpu_s (NaN where not recorded), cpu_per_wall, threads, critical (on the
    critical path)."""
    rows = []
    for run in plan:
        record = load_provenance(run_folder(Path(results_dir), run.name))
        if record is None or record.get("seconds") is None:
            continue
        cpu = record.get("cpu_seconds")
        rows.append({"run": run.name, "step": run.step,
                     "started": pd.Timestamp(record["started"]) if record.get("started") else pd.NaT,
                     "wall_s": float(record["seconds"]),
                     "cpu_s": float("nan") if cpu is None else float(cpu),
                     "threads": int(record.get("threads", run.threads))})  # fmt: skip
    table = pd.DataFrame(
        rows, columns=["run", "step", "started", "wall_s", "cpu_s", "threads"]
    ).astype({"wall_s": float, "cpu_s": float})
    table["cpu_per_wall"] = table["cpu_s"] / table["wall_s"]
    path = critical_path(plan, dict(zip(table["run"], table["wall_s"], strict=True)))
    table["critical"] = table["run"].isin(path)
    return table


def concurrency(table: pd.DataFrame) -> dict[int, float]:
    """Seconds of the span (first start to last end) during which k runs were going, by k: the
    seconds at k below the number of runs allowed at once are idle slots."""
    events = []
    for start, wall in zip(table["started"], table["wall_s"], strict=True):
        if not pd.isna(start):
            events += [(start, 1), (start + timedelta(seconds=wall), -1)]
    seconds: dict[int, float] = {}
    going, previous = 0, None
    for when, step in sorted(events):  # at one instant, ends (-1) before starts
        if previous is not None and when > previous:
            seconds[going] = seconds.get(going, 0.0) + (when - previous).total_seconds()
        going, previous = going + step, when
    return dict(sorted(seconds.items()))


def plan_summary(plan: list[Run], table: pd.DataFrame) -> dict[str, Any]:
    """Totals of a `run_timings` table: span (first start to last end, s), the sums of wall and
    CPU seconds, the seconds with k runs going (`concurrency`), the critical path and its
    seconds."""
    ends = [
        start + timedelta(seconds=wall)
        for start, wall in zip(table["started"], table["wall_s"], strict=True)
        if not pd.isna(start)
    ]
    starts = [s for s in table["started"] if not pd.isna(s)]
    span = (max(ends) - min(starts)).total_seconds() if starts else float("nan")
    path = critical_path(plan, dict(zip(table["run"], table["wall_s"], strict=True)))
    wall = dict(zip(table["run"], table["wall_s"], strict=True))
    return {
        "span_s": span,
        "wall_s": float(table["wall_s"].sum()),
        "cpu_s": float(table["cpu_s"].sum(min_count=1)),
        "concurrency": concurrency(table),
        "critical_path": path,
        "critical_s": sum(wall.get(n, 0.0) for n in path),
    }


def _clock(value: pd.Timestamp) -> str:
    return "" if pd.isna(value) else value.strftime("%H:%M:%S")


def timings_markdown(plan: list[Run], results_dir: str | Path) -> str:
    """The table of each run's wall and CPU seconds (runs on the critical path marked) and the
    plan's totals and critical path, as Markdown (for the provenance page)."""
    table = run_timings(plan, results_dir)
    if table.empty:
        return "No run of this plan recorded its time.\n"
    summary = plan_summary(plan, table)
    lines = [
        "| run | started | wall s | CPU s | CPU / wall | critical path |",
        "|---|---|---:|---:|---:|:---:|",
    ]
    for row in table.itertuples():
        cpu = "not recorded" if pd.isna(row.cpu_s) else f"{row.cpu_s:.1f}"
        share = "" if pd.isna(row.cpu_per_wall) else f"{row.cpu_per_wall:.2f}"
        lines.append(f"| {row.run} | {_clock(row.started)} | {row.wall_s:.1f} | {cpu} | {share} | "
                     f"{'yes' if row.critical else ''} |")  # fmt: skip
    cpu_total = summary["cpu_s"]
    cpu_text = "not recorded" if pd.isna(cpu_total) else f"{cpu_total:.0f} s"
    lines += [
        "",
        f"{len(table)} runs; first start to last end {summary['span_s']:.0f} s; wall seconds "
        f"summed over runs {summary['wall_s']:.0f} s ({summary['wall_s'] / summary['span_s']:.2f} "
        f"runs at once on average); CPU {cpu_text}. Seconds with k runs going: "
        + ", ".join(f"{k}: {v:.0f}" for k, v in summary["concurrency"].items())
        + ".",
        "",
        f"Critical path ({summary['critical_s']:.0f} s): " + " -> ".join(summary["critical_path"]),
        "",
    ]
    return "\n".join(lines)
