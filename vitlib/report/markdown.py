"""REPORT.md: a scoreboard of every study's verdicts, the data caveats of the sets used, then per
study what was run and on what, its claims table, one section per claim with its table and figure
and the inspection figures; the benchmarks and how to re-make it all.

Every link is relative to REPORT.md, so the report and its tables/ and figures/ move together.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vitlib.fileio import atomic_write_text

from .claims import CLAIM_IDS, readable, run_links, to_markdown
from .collect import REPO, StudyInfo, display_root, study_progress
from .controls import controls_text
from .verdict import NOT_RUN

TITLE = 'Reproducing "An Image Is Worth 16x16 Words" (ViT, Dosovitskiy et al., ICLR 2021)'
# (data sets it applies to, text): a caveat is shown when the report's runs use one of its sets
CAVEATS = (
    ({"cifar10", "tiny-imagenet"},
     "CIFAR-10 and Tiny-ImageNet-32 are read from copies stored as JPEG at quality 75, not the\n"
     "  original pixels: accuracy is lower than on the originals, so comparisons inside this report\n"
     "  hold but absolute numbers are not comparable with published ones."),
    ({"cifar10", "tiny-imagenet"},
     "The paper pre-trains on ImageNet-21k (14M images) and JFT-300M (303M) at 224 px; the runs here\n"
     "  train on at most {images} images of {pixels} px (each study's scale is stated above its\n"
     "  verdicts), so \"small data\" here is far smaller than the paper's smallest set."),
    ({"tiny-imagenet"},
     "Tiny-ImageNet's test split has no labels, so its labelled `val` split is the held-out set. Its\n"
     "  classes overlap in meaning with CIFAR-10's (cats, dogs, cars, trucks, frogs, ships, ...):\n"
     "  transfer from it to CIFAR-10 is easier than transfer between unrelated sets."),
    ({"cifar10"}, "CIFAR-10: Krizhevsky, \"Learning Multiple Layers of Features from Tiny Images\", 2009; "
     "not redistributed\n  with this project."),
    ({"tiny-imagenet"}, "Tiny-ImageNet is derived from ImageNet: non-commercial research use only; "
     "not redistributed\n  with this project."),
    ({"digits"}, "scikit-learn's 8 × 8 handwritten digits (1,797 images, shipped with scikit-learn), "
     "upsampled to\n  16 px: a test of the machinery in minutes, not evidence about the paper's claims."),
)
DEMO_BANNER = ("> **Demo report.** Every run here trained on scikit-learn's 8 × 8 digits in minutes on a "
               "CPU: it shows that the machinery works end to end, not evidence about the paper's "
               "claims. The measured report is `results/REPORT.md`.\n")
# (title, claim ids, supporting table, figures) in the order of the report
SECTIONS = (
    ("Training-set size", ("data-size",), "data_size", ("data_size", "budget_lead")),
    ("Pre-training-set size", ("pretrain-size",), "pretrain_size", ("pretrain_size",)),
    ("Few-shot transfer", ("pretrain-size-5shot",), "few_shot", ("few_shot",)),
    ("Compute", ("compute", "compute-hybrid"), "compute", ("compute", "throughput")),
    ("Fine-tuning resolution", ("resolution",), "resolution", ()),
    ("Position embeddings", ("pos-emb",), "pos_emb", ("pos_emb",)),
    ("Class token vs global average pooling", ("pooling",), "pooling", ("pooling",)),
    ("Patch size, depth and width", ("patch-depth",), "patch_depth", ("patch_depth",)),
    ("Inspection", ("attention-distance", "pos-emb-similarity"), "inspection", ()),
)
# the hardware is said once per study (What was run), not in every row, and the reason and the
# command in the claim's own section; claims.csv keeps them all per claim
CLAIM_COLUMNS = ["id", "claim", "ours", "verdict", "by budget", "runs"]
SCOREBOARD_COLUMNS = ["claim", "paper", "study", "scale", "ours", "verdict", "by budget"]
OPTIONAL_FIGURES = {"budget_lead"}  # drawn only for a study trained at several budgets


def _present(table: pd.DataFrame, columns: list) -> pd.DataFrame:
    """`columns` of `table`, the "by budget" column only where some row has one."""
    budget = "by budget" in table and table["by budget"].fillna("").astype(bool).any()
    return table[[c for c in columns if c != "by budget" or budget]]


@dataclass
class StudyReport:
    """One study's part of the report: its runs, claims table, supporting tables and figures."""
    study: StudyInfo
    runs: pd.DataFrame
    claims: pd.DataFrame
    tables: dict
    figures: dict


def scoreboard(studies: list[StudyReport]) -> pd.DataFrame:
    """One line per claim and study that has runs: the paper's number, ours, the verdict; before
    any study has run, one line per claim with the paper's number and "not yet run"."""
    rows = [{**row, "study": s.study.name, "scale": scale_short(study_scale(s.runs)) + _progress(s)}
            for s in studies if _judged(s) for row in s.claims.to_dict("records")]
    if not rows and studies:
        rows = [{**row, "study": "–"} for row in studies[0].claims.to_dict("records")]
    order = {c: i for i, c in enumerate(CLAIM_IDS)}
    rows.sort(key=lambda r: order.get(r["id"], 0))
    for row in rows:  # each claim leads to its section: the numbers' table and runs
        if row["study"] != "–":
            row["claim"] = f"[{row['claim']}](#{anchor(row['study'], row['id'])})"
    board = pd.DataFrame(rows, columns=["id", *SCOREBOARD_COLUMNS])
    return board.astype({"by budget": object, "scale": object}).fillna({"by budget": "", "scale": ""})


def _judged(report: StudyReport) -> bool:
    """Whether a study has a verdict yet (a study whose runs so far judge no claim waits)."""
    return not report.runs.empty and (report.claims["verdict"] != NOT_RUN).any()


def _progress(report: StudyReport) -> str:
    """"; unfinished: 67 of 71 runs" (the scoreboard's scale cell) while runs its study file lists
    have not finished, else ""."""
    done, left = study_progress(report.study, report.runs)
    return f"; unfinished: {done} of {done + len(left)} runs" if left else ""


def progress_text(report: StudyReport, listed: int = 12) -> str:
    """The paragraph that says a study is unfinished: how many of its runs have finished, which
    are still to run, and that its verdicts may move; "" when every run it lists has finished."""
    done, left = study_progress(report.study, report.runs)
    if not left:
        return ""
    names = ", ".join(f"`{name}`" for name in left[:listed])
    more = f" and {len(left) - listed} more" if len(left) > listed else ""
    return (f"**Unfinished: {done} of {done + len(left)} runs of the study file have finished.** "
            f"Still to run: {names}{more}. The verdicts below are judged on the runs so far and may "
            "move when these land.\n")


def anchor(study: str, claim_id: str) -> str:
    """The id of a claim's section in the report (`laptop-data-size`)."""
    return f"{study}-{claim_id}"


def _command(command, scope) -> str:
    """A claim's command as code, followed by what it covers as text: `python ...` (19 runs)."""
    if not isinstance(command, str) or command in ("", "–"):
        return "–"
    return f"`{command}`" + (f" ({scope})" if isinstance(scope, str) and scope else "")


def _link(target: Path, md_dir: Path) -> str:
    return Path(os.path.relpath(target, md_dir)).as_posix()


def _hours(seconds) -> str:
    return f"{seconds / 3600:.2f} h"


def _is_gpu(device) -> bool:
    """result.json names the GPU, or says "cpu (<processor>, <n> cores)"."""
    return isinstance(device, str) and bool(device.strip()) and not device.lower().startswith("cpu")


def what_was_run(runs: pd.DataFrame) -> str:
    """Counts, hardware per device and the precision its runs trained in, software from env.json,
    and the total time on GPUs and CPUs."""
    if runs.empty:
        return "No run yet: every claim is _not yet run_.\n"
    left_out = runs[~runs["usable"].astype(bool)]
    runs = runs[runs["usable"].astype(bool)]
    counts = runs["kind"].value_counts()
    lines = [f"{len(runs) + len(left_out)} run folders: {len(runs)} used ("
             + ", ".join(f"{n} {k}" for k, n in counts.items()) + ")"
             + (f", {len(left_out)} not used (listed below, with why)" if len(left_out) else "") + ".", ""]
    labelled = runs.assign(device=runs["device"].astype(object).fillna("unknown"),
                           precision=runs["precision"].astype(object).fillna("–"))
    by_device = labelled.groupby(["device", "precision"]).agg(
        runs=("run_dir", "count"), train_s=("train_seconds", lambda s: s.astype(float).sum()),
        runner_s=("runner_seconds", lambda s: s.astype(float).sum()))
    hardware = pd.DataFrame({"device": by_device.index.get_level_values("device"),
                             "precision": by_device.index.get_level_values("precision"),
                             "runs": by_device["runs"].to_numpy(),
                             "training time": [_hours(s) for s in by_device["train_s"]],
                             "notebook wall time": [_hours(s) for s in by_device["runner_s"]]})
    lines += [to_markdown(hardware)]
    software = {col: sorted({v for cell in runs[col].dropna() for v in str(cell).split(", ")})
                for col in ("gpus", "torch", "cuda")}
    if any(software.values()):
        lines.append("From the runs' env.json: " + "; ".join(
            f"{col} {', '.join(values)}" for col, values in software.items() if values) + ".")
    on_gpu = runs["device"].map(_is_gpu)
    for name, part in (("GPU", runs[on_gpu]), ("CPU", runs[~on_gpu & runs["device"].notna()])):
        if len(part):
            lines.append(
                f"\nTotal {name} time: {_hours(part['train_seconds'].astype(float).sum())} of training "
                f"steps (sum of train_seconds of the {len(part)} {name} runs) and "
                f"{_hours(part['runner_seconds'].astype(float).sum())} of notebook wall time (sum of "
                "the batch runner's durations in run.json, which include evaluation, compilation "
                "and data loading).")
    return "\n".join(lines) + "\n"


def _claim_section(title, ids, table_name, figure_names, report: StudyReport, tables_dir, md_dir, links):
    out = [f"### {title}\n"]
    claims = report.claims
    for _, row in claims[claims["id"].isin(ids)].iterrows():
        out.append(f'<a id="{anchor(report.study.name, row["id"])}"></a>**{row["claim"]}** ({row["id"]})\n\n'
                   f"- Paper: {row['paper']}\n"
                   f"- Ours: {row['ours']}\n- Verdict: **{row['verdict']}**: {row['reason']}\n"
                   + (f"- By budget: {row['by budget']}\n" if row.get("by budget") else "")
                   + (f"- Budget: {row['budget']}\n" if row.get("budget") else "") +
                   f"- Runs: {row['runs']} (each row below links the run folders of its number)\n"
                   f"- Re-make: {_command(row['command'], row['command_scope'])}\n")
    table = report.tables.get(table_name, pd.DataFrame())
    csv = _link(tables_dir / f"{table_name}.csv", md_dir)
    rows = to_markdown(readable(table, links))  # links: run_links of the study's runs
    out.append(f"Table ([{table_name}.csv]({csv})):\n\n{rows}")
    for name in figure_names:
        path = report.figures.get(name)
        if path is None and name in OPTIONAL_FIGURES:
            continue
        out.append(f"![{name}]({_link(path, md_dir)})\n" if path else f"_Figure {name}: not yet run._\n")
    return "\n".join(out)


def _controls(table, tables_dir: Path, md_dir: Path, links: dict) -> str:
    """The study's precision controls (controls.py), or "" when it has none."""
    if table is None or table.empty:
        return ""
    csv = _link(tables_dir / "controls.csv", md_dir)
    return ("### Controls\n\nRuns that repeat a counted run in another precision, with the same "
            "configuration and seed. They are not counted as seeds; each difference is read beside the "
            f"seed spread of the run it repeats (2 × its seed std).\n\n{controls_text(table)}\n"
            f"Table ([controls.csv]({csv})):\n\n{to_markdown(readable(table, links))}")


def _linked_ids(claims: pd.DataFrame, study: str) -> pd.DataFrame:
    """The claims table with each id a link to its section."""
    return claims.assign(id=[f"[{c}](#{anchor(study, c)})" for c in claims["id"]])


def _inspection_figures(runs: pd.DataFrame, md_dir: Path) -> str:
    """The figures each inspect run saved in its own folder (`<run>/figures/inspect_*.png`)."""
    out = []
    for _, run in runs[runs["kind"] == "inspect"].sort_values("run_dir").iterrows():
        for path in sorted(Path(run["path"], "figures").glob("inspect_*.png")):
            out.append(f"![{run['run_dir']}: {path.stem}]({_link(path, md_dir)})\n")
    return "\n".join(out) or "_Inspection figures: not yet run._\n"


def _study(report: StudyReport, results_dir: Path, md_dir: Path) -> str:
    study, claims = report.study, report.claims
    where = (f"Study file [{study.file}]({_link(REPO / study.file, md_dir)}); command `{study.command}`."
             if study.file else "Runs made without a study file.")
    if report.runs.empty:
        return (f"## Study `{study.name}`: not yet run\n\n{where} No run yet: all {len(claims)} "
                "claims are _not yet run_ for this study.\n")
    tables_dir = results_dir / "tables" / study.name
    parts = [f"## Study `{study.name}`\n", where + " Its claims are judged on its own runs only.\n",
             progress_text(report), scale_text(study_scale(report.runs)),
             "### What was run\n", what_was_run(report.runs),
             "### Claims\n",
             f"Tables: [{_link(tables_dir, md_dir)}/]({_link(tables_dir, md_dir)}); every run folder of the "
             f"study, with its numbers and whether the claims use it: "
             f"[runs.md]({_link(tables_dir / 'runs.md', md_dir)}). Verdicts follow "
             "fixed rules, written in the docstring of each claim function "
             "(`vitlib/report/scaling.py`, `vitlib/report/ablations.py`); a difference within the "
             "seed spread is _within noise_, never _reproduced_.\n",
             to_markdown(_present(_linked_ids(claims, study.name), CLAIM_COLUMNS))]
    links = run_links(report.runs, md_dir)
    for title, ids, table, figs in SECTIONS:
        if claims["id"].isin(ids).any():  # a study that names its claims has no section for the others
            parts.append(_claim_section(title, ids, table, figs, report, tables_dir, md_dir, links))
    parts.append(_controls(report.tables.get("controls"), tables_dir, md_dir, links))
    parts += ["#### Inspection figures\n", _inspection_figures(report.runs, md_dir), _not_used(report.runs)]
    return "\n".join(parts)


def _caveats(runs: pd.DataFrame) -> str:
    used = set(runs["dataset"].dropna()) | set(runs["pretrain_dataset"].dropna())
    used = used or {"cifar10", "tiny-imagenet"}  # the data of the studies that have not run yet
    trained = runs[runs["usable"].astype(bool)] if len(runs) else runs
    sizes = pd.concat([trained["train_size"], trained["pretrain_size"]]).dropna()
    pixels = sorted({int(p) for p in trained["img_size"].dropna()})
    facts = {"images": f"{int(sizes.max()):,}" if len(sizes) else "100,000",
             "pixels": " or ".join(f"{p} × {p}" for p in pixels) or "32 × 32"}
    return "\n".join(f"- {text.format(**facts)}" for sets, text in CAVEATS if sets & used) + "\n"


def study_scale(runs: pd.DataFrame) -> dict:
    """What decides how far a study's numbers are from the paper's: image resolution, training
    length, model size, time per run, precision and device, from its used training runs; {} when
    none."""
    df = runs[runs["usable"].astype(bool) & runs["kind"].isin(["train", "finetune"])] if len(runs) else runs
    if df.empty:
        return {}

    def span(values, fmt):
        values = sorted(set(values.dropna()))
        if not values:
            return None
        low, high = fmt(values[0]), fmt(values[-1])
        return low if low == high else f"{low}–{high}"  # 1.2M, not 1.2M–1.2M

    seconds = df["train_seconds"].dropna().astype(float)
    on_gpu = df["device"].map(_is_gpu)
    return {
        "px": span(df["img_size"].astype(float), lambda v: f"{int(v)} px"),
        "steps": span(df["steps"].astype(float), lambda v: f"{int(v):,}"),
        "images": span(df["train_size"].astype(float), lambda v: f"{int(v):,}"),
        "params": span(df["params"].astype(float), lambda v: f"{v / 1e6:.1f}M"),
        "minutes": (f"{seconds.median() / 60:.0f} min (median; {seconds.max() / 60:.0f} at most)"
                    if len(seconds) else None),
        "precision": ", ".join(sorted(set(df["precision"].dropna()))) or None,
        "device": "GPU" if on_gpu.all() else "CPU" if not on_gpu.any() else "CPU and GPU",
    }


def scale_text(scale: dict) -> str:
    """The study's box: one sentence of its scale."""
    if not scale:
        return ""
    parts = [f"images of {scale['px']}" if scale["px"] else None,
             f"{scale['images']} training images" if scale["images"] else None,
             f"{scale['steps']} optimiser steps per run" if scale["steps"] else None,
             f"models of {scale['params']} parameters" if scale["params"] else None,
             f"{scale['minutes']} of {scale['device']} training per run" if scale["minutes"] else None,
             f"precision {scale['precision']}" if scale["precision"] else None]
    return ("> **Scale of this study**: " + "; ".join(p for p in parts if p) + ". The paper's models "
            "are 86M-632M parameters trained for days on TPUs at 224 px: compare directions and "
            "differences here, not absolute numbers.\n")


def scale_short(scale: dict) -> str:
    """The scoreboard's scale cell: `16 px, 1,500–3,000 steps, 0.3–2.6M params, CPU`."""
    if not scale:
        return ""
    return ", ".join(p for p in (scale["px"], scale["steps"] and f"{scale['steps']} steps",
                                 scale["params"] and f"{scale['params']} params", scale["device"]) if p)


def _benchmarks(results_dir: Path, md_dir: Path) -> str:
    """Each benchmark table of `<results_dir>/bench/` (per-evaluation curves only linked)."""
    files = sorted((results_dir / "bench").glob("*.csv"))
    if not files:
        return "_No benchmark yet (results/bench/*.csv)._\n"
    out = []
    for f in files:
        link = f"[{f.name}]({_link(f, md_dir)})"
        if "curves" in f.stem:
            out.append(f"### {f.stem}\n\nEvery evaluation of every run: {link}.\n")
        else:  # a value every row shares (hardware, torch, commit, ...) is said once, above the table
            table = pd.read_csv(f)
            shared = [c for c in table.columns if len(table) > 1 and table[c].nunique(dropna=False) == 1]
            common = "; ".join(f"{c}: {table[c].iloc[0]}" for c in shared if pd.notna(table[c].iloc[0]))
            table, notes = _long_repeats(table.drop(columns=shared))
            out.append(f"### {f.stem}\n\n{link}" + (f" (every row: {common})" if common else "")
                       + f"\n\n{to_markdown(readable(table))}"
                       + "".join(f"\n[{i}] {text}\n" for i, text in enumerate(notes, 1)))
    return "\n".join(out)


def _long_repeats(table: pd.DataFrame, longer_than: int = 60):
    """A long text that several rows share (a "skipped: ..." message) once, below the table: the
    cells say `[1]`; returns (table, the notes in order)."""
    notes, table = [], table.copy()
    for col in table.columns:
        if table[col].dtype != object:
            continue
        counts = table[col].value_counts()
        for text in counts[(counts > 1)].index:
            if isinstance(text, str) and len(text) > longer_than:
                notes.append(text)
                table.loc[table[col] == text, col] = f"[{len(notes)}]"
    return table, notes


def _not_used(runs: pd.DataFrame) -> str:
    """Every run folder of a study that its claims do not use, with its status and why."""
    bad = runs[~runs["usable"].astype(bool)]
    if bad.empty:
        return ""
    rows = "\n".join(f"- `{r.run_dir}`: {r.status}; {r.problem if isinstance(r.problem, str) else ''}".rstrip("; ")
                     for r in bad.itertuples())
    return f"#### Runs not used\n\nThe run folders its claims do not use, and why:\n\n{rows}\n"


def _remake(studies: list[StudyReport], results_dir: Path) -> str:
    run = [s.study.command for s in studies if s.study.command and not s.runs.empty] or [
        "make reproduce            # python -m vitlib.experiments run experiments/cifar.yaml"]
    lines = [*run, f"python -m vitlib.report {display_root(results_dir)}   # this report (make report)"]
    return ("## How to re-make\n\nThe batch runner skips finished runs, so the same commands "
            "resume an interrupted study; each run's own command is in the claims tables and in "
            "its result.json.\n\n```bash\n" + "\n".join(lines) + "\n```\n")


def write_report(results_dir, runs: pd.DataFrame, studies: list[StudyReport], out_md=None) -> Path:
    """Write REPORT.md (default `<results_dir>/REPORT.md`) and return its path."""
    results_dir = Path(results_dir)
    out_md = Path(out_md) if out_md is not None else results_dir / "REPORT.md"
    md_dir = out_md.parent
    demo = len(runs) and set(runs["dataset"].dropna()) <= {"digits"}
    board = scoreboard(studies)
    waiting = [s.study.name for s in studies if not _judged(s)]
    parts = [f"# {TITLE}\n", DEMO_BANNER if demo else "",
             f"Built by `python -m vitlib.report {display_root(results_dir)}` from the run records "
             "under `runs/` only: no number here is typed by hand, and a claim without runs says "
             "_not yet run_. Accuracies are top-1 in %, mean ± sample std over seeds (n). Each "
             "study is judged on its own runs: runs of different studies (different scales, "
             "hardware) never meet in one comparison.\n",
             "## Scoreboard\n",
             to_markdown(_present(board, SCOREBOARD_COLUMNS)) if len(board) else "No study yet.\n",
             ("Not yet run: " + ", ".join(f"study `{n}`" for n in waiting)
              + " (every claim _not yet run_ so far).\n") if waiting else "",
             "## Data caveats\n", _caveats(runs)]
    parts += [_study(s, results_dir, md_dir) for s in studies]
    parts += ["## Benchmarks\n", _benchmarks(results_dir, md_dir), _remake(studies, results_dir)]
    md_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_md, "\n".join(p for p in parts if p))
    return out_md
