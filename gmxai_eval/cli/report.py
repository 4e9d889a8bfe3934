"""``gmxai-eval report RESULTS_JSON [--out DIR]``: re-render every output file of a run
(``leaderboard.md/.tex/.csv``, ``samples.csv``, ``report.html``) from its ``results.json`` and
the ``report_data.json`` next to it; no model is loaded."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report`` to the ``gmxai-eval`` parser."""
    p = subparsers.add_parser("report", help="re-render a run's tables and report.html from its results.json",
                              description="Re-render leaderboard.md/.tex/.csv, samples.csv and report.html "
                                          "of a run from RESULTS_JSON and the report_data.json next to it "
                                          "(no model is run).")
    p.add_argument("results", help="a run's results.json")
    p.add_argument("--out", help="output folder (default: the run folder)")
    p.set_defaults(func=_report)


def rerender(results_json: str | Path, out: str | Path | None = None) -> Path:
    """Write every output file of the run of ``results_json`` into ``out`` (default: its run
    folder) and return that folder; with another ``out``, ``results.json`` and
    ``report_data.json`` are copied there too."""
    from gmxai_eval.report.render import REPORT_DATA, read_run, table_from, write_outputs
    from gmxai_eval.runner.store import write_table
    from gmxai_eval.utils import check_output_folder, ensure_dir, write_atomic

    src = Path(results_json)
    if out is not None:
        check_output_folder(out)  # a file in the way / no permission: OutputError before reading
    results, data = read_run(src)
    dest = ensure_dir(Path(out) if out is not None else src.parent)
    write_table(table_from(data), dest)
    write_outputs(results, data, dest, html=bool(results.get("spec", {}).get("run", {}).get("html", True)))
    if dest.resolve() != src.parent.resolve():
        for name in (src.name, REPORT_DATA):
            write_atomic(dest / name, (src.parent / name).read_text(encoding="utf-8"))
    return dest


def _report(args: argparse.Namespace) -> int:
    print(f"report: {rerender(args.results, args.out)}")
    return 0
