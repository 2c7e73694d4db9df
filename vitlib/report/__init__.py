"""The project's report, built from `results/` only (it never trains).

    from vitlib.report import build_report
    build_report("results")          # results/REPORT.md, results/tables/*, results/figures/*
    build_report("results/demo")     # the same, all inside results/demo/

Steps, each usable alone (notebooks/05_report.ipynb shows them one by one):
`load_runs` (collect.py) reads every `runs/**/result.json`; `evaluate_claims` (claims.py, rules
in scaling.py and ablations.py) gives the claims table and its supporting tables; `write_tables`
saves them as CSV and Markdown; `make_figures` (figures.py) draws the PNGs; `write_report`
(markdown.py) writes REPORT.md. `python -m vitlib.report results` also renders the notebook to
report.html.
"""
from __future__ import annotations

from pathlib import Path

from .claims import evaluate_claims, runs_table, write_tables
from .collect import fmt_mean_std, load_runs, summarise
from .figures import make_figures
from .markdown import write_report
from .verdict import VERDICTS


def build_report(results_dir="results", out_md=None) -> Path:
    """Read `<results_dir>/runs/**`, write `<results_dir>/tables/`, `<results_dir>/figures/` and
    REPORT.md (default `<results_dir>/REPORT.md`); return the REPORT.md path."""
    results_dir = Path(results_dir)
    runs = load_runs(results_dir)  # FileNotFoundError before anything is written
    claims, tables = evaluate_claims(runs)
    write_tables(results_dir, runs, claims, tables)
    figures = make_figures(runs, results_dir / "figures")
    return write_report(results_dir, runs, claims, tables, figures, out_md)


__all__ = ["VERDICTS", "build_report", "evaluate_claims", "fmt_mean_std", "load_runs",
           "make_figures", "runs_table", "summarise", "write_report", "write_tables"]
