"""``seedlock-report``: one page on one or more sweeps — returns across seeds, speed, and whether
repeated runs were bitwise identical.

    seedlock-report runs/multirun/2026-11-23_10-00-00_000000
    seedlock-report SWEEP_A SWEEP_B --out reports/cartpole   # a sweep run twice: repeats compared

Writes returns.png, report.md, report.csv and report.json into ``--out`` (default
``<first sweep dir>/report``) and never replaces an earlier report without ``--force``.
Exit code 2: a path is missing or holds no run dirs, or the report files exist.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trainers.run_results import Group, NoRunsError, Run, find_run_dirs, group_runs, read_run

PLOT_FILE, MARKDOWN_FILE, CSV_FILE, JSON_FILE = "returns.png", "report.md", "report.csv", "report.json"
REPORT_FILES = (PLOT_FILE, MARKDOWN_FILE, CSV_FILE, JSON_FILE)
EXIT_BAD_INPUT = 2
# Small on purpose: reports get committed next to the code that made them.
FIGURE_INCHES, FIGURE_DPI = (7.0, 4.5), 100
CSV_COLUMNS = (
    "library", "task", "seeds", "runs", "final_return_mean", "final_return_std",
    "wall_seconds_mean", "env_steps_per_second_mean", "bitwise_identical",
)
MARKDOWN_HEADER = (
    "library", "task", "seeds", "runs", "final return (mean ± std over seeds)", "wall time (s, mean per run)",
    "env-steps/s (mean)", "bitwise identical",
)


class ReportInputError(ValueError):
    """Input that seedlock-report refuses, said in one paragraph."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="seedlock-report",
        description="Summarise the run dirs of one or more seedlock-train sweeps: a returns plot "
        "(mean ± std across seeds) and a table per library and task, with a bitwise check of "
        "repeated runs.",
        epilog="Pass the same sweep run twice to check repeats bit for bit. Exit code 2: bad input.",
    )
    parser.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR",
                        help="a sweep dir (seedlock-train -m ...) or any dir holding run dirs")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the report (default <first SWEEP_DIR>/report)")
    parser.add_argument("--force", action="store_true", help="replace report files already in --out")
    args = parser.parse_args(argv)
    out_dir = args.out or args.sweep_dirs[0] / "report"
    try:
        run_dirs = find_run_dirs(args.sweep_dirs)
        refuse_overwrite(out_dir, args.force)
    except NoRunsError as error:
        _exit_bad_input(f"{error}. Expected a sweep dir from `seedlock-train -m ...` (one run dir per job) "
                        "or directories holding run dirs with manifest.json.")
    except ReportInputError as error:
        _exit_bad_input(str(error))
    runs = [read_run(run_dir) for run_dir in run_dirs]
    groups = group_runs(runs)
    failures = [run for run in runs if run.error is not None]
    try:
        write_report(out_dir, args.sweep_dirs, groups, failures)
    except OSError as error:
        _exit_bad_input(f"cannot write the report into {str(out_dir)!r}: {error}")
    print(markdown_table(groups))
    for note in (note for group in groups for note in group.notes):
        print(f"seedlock-report: note: {note}")
    if failures:
        print(f"seedlock-report: {len(failures)} failed or unfinished run(s), listed in {out_dir / MARKDOWN_FILE}")
    for name in REPORT_FILES:
        print(f"seedlock-report: wrote {out_dir / name}")


def _exit_bad_input(message: str) -> NoReturn:
    print(f"seedlock-report: error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def write_report(out_dir: Path, sweep_dirs: list[Path], groups: list[Group], failures: list[Run]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_returns(groups, out_dir / PLOT_FILE)
    (out_dir / MARKDOWN_FILE).write_text(render_markdown(sweep_dirs, groups, failures))
    write_csv(groups, out_dir / CSV_FILE)
    (out_dir / JSON_FILE).write_text(json.dumps(report_json(sweep_dirs, groups, failures), indent=2) + "\n")


def refuse_overwrite(out_dir: Path, force: bool) -> None:
    """A report someone kept (or edited) is theirs: replace it only when asked to."""
    existing = [name for name in REPORT_FILES if (out_dir / name).exists()]
    if existing and not force:
        raise ReportInputError(
            f"{str(out_dir)!r} already holds a report ({', '.join(existing)}); seedlock-report never "
            "overwrites one unasked. Pass --force to replace it, or --out for another directory."
        )


def table_row(group: Group) -> dict[str, Any]:
    mean, std = group.final_return_stats()
    return {
        "library": group.library,
        "task": group.task,
        "seeds": group.seeds,
        "runs": len(group.runs),
        "final_return_mean": mean,
        "final_return_std": std,
        "wall_seconds_mean": group.summary_mean("wall_seconds"),
        "env_steps_per_second_mean": group.summary_mean("env_steps_per_second"),
        "bitwise_identical": group.bitwise,
    }


def markdown_table(groups: list[Group]) -> str:
    lines = ["| " + " | ".join(MARKDOWN_HEADER) + " |", "|" + "---|" * len(MARKDOWN_HEADER)]
    for row in map(table_row, groups):
        mean, std = row["final_return_mean"], row["final_return_std"]
        final = "n/a" if mean is None else f"{mean:.2f} ± {std:.2f}"
        cells = [
            row["library"], row["task"], ", ".join(map(str, row["seeds"])), str(row["runs"]), final,
            _format(row["wall_seconds_mean"], ".1f"), _format(row["env_steps_per_second_mean"], ",.0f"),
            row["bitwise_identical"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _format(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def render_markdown(sweep_dirs: list[Path], groups: list[Group], failures: list[Run]) -> str:
    lines = ["# seedlock report", "", "Sweeps: " + ", ".join(f"`{path}`" for path in sweep_dirs), "",
             f"![mean return vs env steps]({PLOT_FILE})", "", markdown_table(groups), ""]
    notes = [f"Note: {note}" for group in groups for note in group.notes]
    lines += [*notes, ""] if notes else []
    lines += ["## Failed or unfinished runs", ""]
    if not failures:
        lines.append("None.")
    for run in failures:
        seed = f"seed {run.seed}" if run.seed is not None else None
        what = ", ".join(part for part in (run.library, run.task, seed) if part)
        overrides = f" (overrides: {' '.join(run.overrides)})" if run.overrides else ""
        lines.append(f"- `{run.run_dir}`{f' [{what}]' if what else ''}{overrides}: {run.error}")
    return "\n".join(lines) + "\n"


def write_csv(groups: list[Group], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in map(table_row, groups):
            # repr precision, so the CSV holds exactly the numbers the JSON does
            writer.writerow({**row, "seeds": " ".join(map(str, row["seeds"]))})


def report_json(sweep_dirs: list[Path], groups: list[Group], failures: list[Run]) -> dict[str, Any]:
    """The table's rows, plus each run's values and the plotted curve, for anyone who re-plots."""
    rows = []
    for group in groups:
        steps, means, stds = group.curve()
        runs = [{
            "run_dir": str(run.run_dir), "seed": run.seed, "config_sha256": run.config_sha256,
            "final_return": run.final_return, "iterations": len(run.returns),
            "wall_seconds": (run.summary or {}).get("wall_seconds"),
            "env_steps_per_second": (run.summary or {}).get("env_steps_per_second"),
        } for run in group.runs]
        rows.append({**table_row(group), "runs_detail": runs, "notes": group.notes,
                     "curve": {"env_steps": steps, "mean_return": means, "std_return": stds}})
    return {
        "sweep_dirs": [str(path) for path in sweep_dirs],
        "groups": rows,
        "failures": [{"run_dir": str(run.run_dir), "library": run.library, "task": run.task, "seed": run.seed,
                      "overrides": run.overrides, "error": run.error} for run in failures],
    }


def plot_returns(groups: list[Group], path: Path) -> None:
    """Mean return vs env steps, one line and ± std band per (library, task); Agg, no display."""
    figure = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for group in groups:
        steps, means, stds = group.curve()
        mean, std = np.asarray(means), np.asarray(stds)
        label = f"{group.library} · {group.task} ({len(group.runs)} runs, {len(group.seeds)} seeds)"
        (line,) = axes.plot(steps, mean, marker="o" if len(steps) == 1 else None, label=label)
        axes.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    if groups:
        axes.legend(loc="best", fontsize="small")
    else:
        axes.text(0.5, 0.5, "no finished runs", transform=axes.transAxes, ha="center", va="center")
    axes.set_xlabel("env steps")
    axes.set_ylabel("mean episode return")
    axes.set_title("Mean return across seeds (band: ± std)")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


if __name__ == "__main__":
    main()
