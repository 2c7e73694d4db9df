"""The project's report, built from `results/` only (it never trains).

    from vitlib.report import build_report
    build_report("results")          # results/REPORT.md, results/tables/*, results/figures/*
    build_report("results/demo")     # the same, all inside results/demo/

Steps, each usable alone: `load_runs` (collect.py) reads every run folder under `runs/`;
`report_studies` lists the studies (each is judged on its own runs: runs of different studies never
meet in one comparison; a study file's `claims` limits it to those); per study, `evaluate_claims`
(claims.py, rules in scaling.py and ablations.py) gives the claims table and its supporting tables
(for a study trained at several budgets, `judge_ladder` (budgets.py) adds each claim's verdict per
budget and the plateau check; `precision_controls` (controls.py) reads the runs repeated in
another precision beside the seed spread), `write_tables` saves them under `tables/<study>/` as CSV and Markdown
and `make_figures` (figures.py) draws the PNGs into `figures/<study>/`; `write_report` (markdown.py)
writes REPORT.md, which opens with a scoreboard of every study's verdicts (`tables/scoreboard.csv`).
`python -m vitlib.report results` also renders the report notebook to report.html.
"""
from __future__ import annotations

from pathlib import Path

from vitlib.experiments.study import study_claims

from .budgets import judge_ladder
from .claims import CLAIM_IDS, evaluate_claims, runs_table, write_table, write_tables
from .collect import fmt_mean_std, load_runs, report_studies, summarise
from .controls import precision_controls
from .figures import make_figures
from .markdown import StudyReport, scoreboard, write_report
from .verdict import VERDICTS


def build_report(results_dir="results", out_md=None) -> Path:
    """Read `<results_dir>/runs/**`, write `<results_dir>/tables/`, `<results_dir>/figures/` and
    REPORT.md (default `<results_dir>/REPORT.md`); return the REPORT.md path."""
    results_dir = Path(results_dir)
    runs = load_runs(results_dir)  # FileNotFoundError before anything is written
    studies = []
    for study in report_studies(results_dir, runs):
        study_claims(study.claims, study.file, CLAIM_IDS)  # a study file's claims are the report's own
        study_runs = runs[runs["study"] == study.name]
        claims, tables = evaluate_claims(study_runs)
        claims, by_budget = judge_ladder(study_runs, claims, tables)  # a study trained at several budgets
        if study.claims:  # a study that names its claims is judged on those only
            claims = claims[claims["id"].isin(study.claims)].reset_index(drop=True)
            tables = {name: table for name, table in tables.items() if name in set(claims["table"])}
            by_budget = by_budget[by_budget["id"].isin(study.claims)] if not by_budget.empty else by_budget
        if not by_budget.empty:
            tables["by_budget"] = by_budget
        controls = precision_controls(study_runs)  # runs repeated in another precision
        if not controls.empty:
            tables["controls"] = controls
        write_tables(results_dir / "tables" / study.name, study_runs, claims, tables)
        figures = make_figures(study_runs, results_dir / "figures" / study.name)
        studies.append(StudyReport(study, study_runs, claims, tables, figures))
    write_table(scoreboard(studies), results_dir / "tables", "scoreboard")
    return write_report(results_dir, runs, studies, out_md)


__all__ = ["VERDICTS", "build_report", "evaluate_claims", "fmt_mean_std", "load_runs",
           "make_figures", "report_studies", "runs_table", "summarise", "write_report", "write_tables"]
