"""Load every run folder under `<results_dir>/runs/**` into one pandas DataFrame, and summarise
it as mean ± std over seeds.

A run folder holds `result.json` (the notebook's record, `vitlib.experiments.results`), `run.json`
(the batch runner's record), or `summary.json` / `config.json` (written by vitlib.train.fit);
`env.json` and the summaries (in the folder itself or in a subfolder) add hardware and precision.
Folders the runner moved aside (`<run>.stale-<time>`) are ignored. Nothing is dropped silently:
a folder whose run failed, diverged or did not finish, one whose files are damaged, and a copy of
another run (same study, configuration and seed) each become a row with `usable` False and
`problem` saying why; `load_runs` prints one warning line per such folder.
"""
from __future__ import annotations

import json
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from vitlib.experiments.study import load_study, study_claims
from vitlib.train import runfolder

KINDS = ("train", "finetune", "inspect")
RUNNER_RECORD = "run.json"  # the study runner's record of a run (vitlib.experiments.runner)
# notebooks whose runs leave no result.json by design: their own figures and tables, no claim input
NO_RECORD_NOTEBOOKS = ("00_how_vit_works.ipynb", "03_vit_vs_cnn.ipynb", "05_report.ipynb", "06_attention.ipynb")
# Statuses of run.json whose result.json may be stale or partial: listed, never used in claims.
UNUSABLE_STATUS = ("failed", "running", "interrupted")
REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"  # the study files a report knows of before they run
VIT_DEFAULTS = {"pos_emb": "learned", "pool": "token"}  # VisionTransformer's constructor defaults

# Columns every runs table has, even when no run exists yet (so every filter works on it).
COLUMNS = [
    "run_dir", "kind", "study", "run", "model", "label", "family", "dataset", "train_size",
    "img_size", "seed", "recipe", "lr", "steps", "steps_taken", "epochs", "params", "flops_per_image",
    "train_flops", "train_seconds", "images_per_s", "device", "precision", "command", "model_args",
    "top1", "best_top1", "top1_ema", "top1_tta", "accuracy",
    "pretrained_from", "pretrain_dataset", "pretrain_size", "finetune_top1", "scratch_top1",
    "few_shot", "few_shot_std", "few_shot_5", "few_shot_5_std",
    "source_run", "attention_distance", "image_size", "patch_size", "erf_radius",
    "pos_similarity_neighbour_minus_far", "figures",
    "pos_emb", "pool", "patch", "depth", "width",
    "status", "usable", "problem", "control_of", "runner_seconds", "study_file", "gpus", "torch", "cuda", "path",
]
# What a run folder holds (any one of them makes a folder a run folder).
RUN_FILES = (runfolder.RESULT, RUNNER_RECORD, runfolder.SUMMARY, runfolder.CONFIG)
# Parameters that say where a run is, not what it is: a copy of a run differs only in these.
PLACE_PARAMS = ("out_dir", "out", "resume", "data_dir")


def display_root(results_dir) -> str:
    """How the report names `results_dir`: relative to the working directory when inside it
    (`results`, `results/demo`), else just its folder name."""
    path = Path(results_dir).resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def find_run_folders(results_dir) -> list[Path]:
    """Every run folder under `<results_dir>/runs/`, sorted: a folder holding one of RUN_FILES
    inside no other run folder (02's finetune/ and scratch/ belong to their run), `*.stale-*` skipped."""
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results_dir {str(root)!r} is not a directory")
    folders = {f.parent for name in RUN_FILES for f in (root / "runs").rglob(name)}
    folders = {d for d in folders if not any(".stale-" in part for part in d.relative_to(root).parts)}
    return sorted(d for d in folders if not any(parent in folders for parent in d.parents))


def _read_json(path: Path, required: bool = False, want=dict):
    """The JSON object in `path` (None when absent and not required); a named ValueError when the
    file is damaged or holds something other than a `want`."""
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path} does not exist")
        return None
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path.name} is not valid JSON ({e})") from None
    if want is not None and not isinstance(value, want):
        raise ValueError(f"{path.name} holds a {type(value).__name__}, not a JSON object")
    return value


def _label(model, model_args: dict) -> str:
    """`vit_s4` or `vit_s4 (pool=gap, depth=6)`: one name per model configuration."""
    if not model_args:
        return str(model)
    return f"{model} ({', '.join(f'{k}={v}' for k, v in sorted(model_args.items()))})"


def _hardware(folder: Path) -> dict:
    """GPU names and versions from every env.json in the run folder (01 writes one, 02 two), and
    the precision every training in it resolved "auto" to (its summary.json)."""
    gpus, torch_versions, cuda_versions = set(), set(), set()
    for env_file in sorted(folder.rglob(runfolder.ENV)):
        env = _read_json(env_file) or {}
        gpus.update(env.get("gpus") or [])
        torch_versions.add(env.get("torch"))
        cuda_versions.add(env.get("cuda"))
    precisions = {(_read_json(f) or {}).get("precision") for f in folder.rglob(runfolder.SUMMARY)}
    join = lambda values: ", ".join(sorted(str(v) for v in values if v)) or None  # noqa: E731
    return {"gpus": join(gpus), "torch": join(torch_versions), "cuda": join(cuda_versions),
            "precision": join(precisions)}


def load_run(folder: Path, root_name: str, results_dir: Path) -> dict:
    """One row: result.json's fields plus status, runner time and hardware of its folder. A run
    that cannot be used (no result.json, a failed/unfinished/diverged run, a damaged file) is a row
    too, with `usable` False and `problem` saying why."""
    folder = Path(folder)
    row = {"run_dir": f"{root_name}/{folder.relative_to(results_dir).as_posix()}", "path": str(folder),
           "run": folder.name}
    try:
        runner = _read_json(folder / RUNNER_RECORD) or {}
        row["study"] = runner.get("study") or _folder_study(folder, results_dir)
        row["status"] = runner.get("status", "unknown")
        summary = _read_json(folder / runfolder.SUMMARY) or {}
        record = _read_json(folder / runfolder.RESULT)
        if record is None:
            status = runner.get("status") or summary.get("status") or "incomplete"
            if status == "complete" and Path(str(runner.get("notebook", ""))).name in NO_RECORD_NOTEBOOKS:
                # a notebook that measures nothing for the claims (a comparison, the report): listed, not a problem
                return {**row, "status": status, "usable": False, "quiet": True,
                        "problem": "its notebook writes no result.json (a comparison or report run: no claim input)"}
            return {**row, "status": status, "usable": False,
                    "problem": f"no result.json (run status: {status})"}
        if record.get("kind") not in KINDS:
            raise ValueError(f"result.json: 'kind' must be one of {', '.join(KINDS)}, got {record.get('kind')!r}")
        row = {**record, **row, "run": record.get("run") or folder.name}
        row["study"] = record.get("study") or row["study"]
        _derive(row)
        row["steps_taken"], row["steps"] = row.get("steps"), _budget(folder, row)
        if row.get("train_seconds") is None:
            row["train_seconds"] = summary.get("train_seconds")
        ended = summary.get("status") if summary.get("status") in ("diverged", "interrupted") else None
        row["usable"] = row["status"] not in UNUSABLE_STATUS and ended is None
        if not row["usable"]:
            row["status"] = ended or row["status"]
            row["problem"] = f"the run {row['status']}" + (f": {summary['error']}" if summary.get("error") else "")
        row["runner_seconds"] = runner.get("duration_s")
        row["study_file"] = runner.get("study_file")
        hardware = _hardware(folder)
        hardware["precision"] = hardware["precision"] or row.get("precision")  # result.json's, if no summary says
        row.update(hardware)
    except (ValueError, OSError, TypeError, AttributeError) as err:
        row.setdefault("study", _folder_study(folder, results_dir))
        return {**row, "status": "unreadable", "usable": False, "problem": f"unreadable: {err}"}
    return row


def _budget(folder: Path, row: dict):
    """A run's budget in optimiser steps: what it was set to train (result.json's steps_planned). A
    run that early stopping ended took fewer steps (steps_taken) but belongs to its budget's
    comparisons. Records made before steps_planned existed: their config.json (in the run folder,
    or a fine-tuning's finetune/) says the steps, or the epochs to scale."""
    if row.get("steps_planned") is not None:
        return row["steps_planned"]
    if row.get("stopped_early_step") is None or not row.get("steps"):
        return row.get("steps")
    config = next((c for c in (_read_json(folder / runfolder.CONFIG),
                               _read_json(folder / "finetune" / runfolder.CONFIG)) if c), {})
    train = config.get("train") or {}
    if train.get("steps"):
        return train["steps"]
    if train.get("epochs") and row.get("epochs"):
        return round(train["epochs"] * row["steps"] / row["epochs"])  # steps per epoch x epochs set
    return row.get("steps")


def _derive(row: dict) -> None:
    """The columns the claims read that result.json does not hold as such: label, accuracy, the
    5-shot numbers and the ViT's shape."""
    model_args = row.get("model_args") or {}
    row["model_args"] = model_args
    family = row.get("family")
    row["label"] = _label(row.get("model"), model_args)
    row["accuracy"] = row.get("finetune_top1") if row["kind"] == "finetune" else row.get("top1")
    row["few_shot_5"] = (row.get("few_shot") or {}).get("5")
    row["few_shot_5_std"] = (row.get("few_shot_std") or {}).get("5")  # over the run's k-shot draws
    shape = row.get("shape") or {}  # the ViT's shape as built, recorded when it trained
    if family in ("vit", "hybrid"):
        for key, default in VIT_DEFAULTS.items():
            row[key] = shape.get(key, model_args.get(key, default))
    row["patch"], row["depth"], row["width"] = ((shape.get("patch_size"), shape.get("depth"), shape.get("embed_dim"))
                                                if family == "vit" else (None, None, None))


def parameters_key(params, ignore=()) -> str | None:
    """A run's recorded parameters as one text, without those that say where it lies (PLACE_PARAMS)
    and those in `ignore`: runs with equal keys differ only there. None where none are recorded."""
    if not (isinstance(params, dict) and params):
        return None
    what = {k: v for k, v in params.items() if k not in PLACE_PARAMS and k not in ignore}
    return json.dumps(what, sort_keys=True, default=str)


def _identity(row: dict, ignore=()):
    """What makes a run this run: its study, kind and recorded parameters (but `ignore`), not where
    it lies (None where result.json records no parameters). Two usable rows with one identity are
    one run counted twice, e.g. a copied folder."""
    key = parameters_key(row.get("parameters"), ignore)
    return None if key is None else (row.get("study"), row.get("kind"), key)


def _mark_copy(row: dict, of: str, same: str = "same study, configuration and seed") -> None:
    """`row` is a copy of the run in folder `of`, not another seed: it leaves the claims."""
    row["usable"] = False
    row["problem"] = f"a copy of {of} ({same}): counted once"


def _mark_copies(rows: list[dict]) -> None:
    """Keep the first folder of each identity; every later one is a copy, not another seed."""
    first = {}
    for row in rows:
        key = _identity(row) if row.get("usable") else None
        if key is None:
            continue
        if key in first:
            _mark_copy(row, first[key])
        else:
            first[key] = row["run_dir"]


def _mark_controls(rows: list[dict]) -> None:
    """Usable runs of one study that differ only in their precision are one run and its precision
    controls: the run in the study's most common precision counts, each other one leaves the claims
    (it is no other seed), `control_of` naming the run it repeats; one whose precision resolved to
    the main run's (a stated "bf16" beside "auto") is a copy, counted once."""
    groups = {}
    for row in rows:
        key = _identity(row, ignore=("precision",)) if row.get("usable") else None
        if key is not None:
            groups.setdefault(key, []).append(row)
    common = Counter((row.get("study"), row.get("precision")) for row in rows if row.get("usable"))
    for group in groups.values():
        main = max(group, key=lambda row: common[(row.get("study"), row.get("precision"))])
        for row in (r for r in group if r is not main):
            if row.get("precision") == main.get("precision"):  # "auto" that resolved to the same precision
                _mark_copy(row, main["run_dir"], "same study, configuration, seed and precision")
                continue
            row["usable"] = False
            row["control_of"] = main["run_dir"]
            row["problem"] = (f"a precision control of {main['run_dir']} (the same configuration and seed "
                              f"in {row.get('precision')} instead of {main.get('precision')}): compared "
                              "under Controls, not counted as another seed")


def _folder_study(folder: Path, results_dir: Path) -> str:
    """The study of a run without a recorded one: its first folder under runs/ (runs/<study>/<run>)."""
    parts = folder.relative_to(Path(results_dir) / "runs").parts
    return parts[0] if len(parts) > 1 else "unnamed"


def load_runs(results_dir, warn=None) -> pd.DataFrame:
    """Every run folder under `<results_dir>/runs/**` as one row (columns: `COLUMNS` plus any
    extra field of result.json). Empty, with the same columns, when nothing has run yet. `warn`
    (default: print to stderr) gets one line per folder that cannot be used, naming why."""
    results_dir = Path(results_dir)
    root_name = display_root(results_dir)
    rows = [load_run(folder, root_name, results_dir) for folder in find_run_folders(results_dir)]
    _mark_copies(rows)
    _mark_controls(rows)
    warn = warn or (lambda line: print(line, file=sys.stderr))
    for row in rows:
        if not row.get("usable") and not row.pop("quiet", False):
            warn(f"warning: {row['run_dir']} not used: {row.get('problem') or row.get('status')}")
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = pd.Series(dtype=object if col not in ("usable",) else bool)
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS + extra].reset_index(drop=True)


@dataclass(frozen=True)
class StudyInfo:
    """A study of the report: its name, its study file (None for runs made without one), the
    command that (re-)runs it, the ids of the claims it judges (() for all: the study file's
    `claims`) and the names of the runs its study file lists (() when it has none)."""
    name: str
    file: str | None = None
    command: str | None = None
    claims: tuple = ()
    planned: tuple = ()


def report_studies(results_dir, runs: pd.DataFrame) -> list[StudyInfo]:
    """The studies a report covers, each judged on its own runs (runs of different studies never
    meet in one comparison): every study file of the repository's `experiments/` whose output
    lies in `<results_dir>/runs/` (so a study that has not run yet is listed as such), and every
    other study among the runs. Studies with usable runs come first, the most runs first."""
    runs_dir = (Path(results_dir) / "runs").resolve()
    declared = {}
    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        try:  # only its name and output: checking the rest is the runner's job
            data = yaml.safe_load(path.read_text())
            name = str(data["name"])
            output = Path(data.get("output") or f"results/runs/{name}")
        except (yaml.YAMLError, OSError, TypeError, KeyError):
            continue
        output = output if output.is_absolute() else REPO / output
        if output.resolve().parent == runs_dir:
            rel = path.relative_to(REPO).as_posix()
            declared[name] = StudyInfo(name, rel, f"python -m vitlib.experiments run {rel}",
                                       study_claims(data.get("claims"), rel), _planned(path))
    names = [*declared, *(s for s in runs["study"].dropna().unique() if s not in declared)]
    counts = usable(runs)["study"].value_counts()
    names.sort(key=lambda name: -counts.get(name, 0))
    return [declared.get(name) or _undeclared(name, runs) for name in names]


def _planned(path: Path) -> tuple:
    """The names of the runs a study file lists, in its order; () when it does not expand (the
    runner names what is wrong with it)."""
    try:
        return tuple(run.name for run in load_study(path).runs)
    except (ValueError, OSError):
        return ()


def study_progress(study: StudyInfo, runs: pd.DataFrame) -> tuple[int, list]:
    """(how many runs of the study file have finished, the names of those still to run): a
    planned run counts once its folder among `runs` (the study's) has run to its end: status
    "complete" (used by the claims or not: a control, a comparison notebook)."""
    finished = runs[runs["status"] == "complete"] if len(runs) else runs
    done = {Path(d).name for d in finished["run_dir"]}
    return len(set(study.planned) & done), [name for name in study.planned if name not in done]


def _undeclared(name: str, runs: pd.DataFrame) -> StudyInfo:
    files = runs.loc[runs["study"] == name, "study_file"].dropna()
    file = str(files.iloc[0]) if len(files) else None
    return StudyInfo(name, file, f"python -m vitlib.experiments run {file}" if file else None)


def usable(runs: pd.DataFrame, kind: str | None = None) -> pd.DataFrame:
    """The runs a claim may use: finished (run.json not failed/running/interrupted), not
    diverged, and of `kind` when given."""
    keep = runs["usable"].astype(bool)
    if kind is not None:
        keep &= runs["kind"] == kind
    return runs[keep]


def summarise(df: pd.DataFrame, by: list[str], value: str = "accuracy") -> pd.DataFrame:
    """Mean, sample std (NaN for one seed) and n of `value` per group of `by`, and the run folders
    each cell came from (`runs`: run_dir values, space-separated); rows with a missing value
    dropped; sorted by `by`."""
    data = df.dropna(subset=[value])
    if data.empty:
        return pd.DataFrame(columns=[*by, "mean", "std", "n", "runs"])
    groups = data.groupby(by, dropna=False)
    out = groups[value].agg(["mean", "std", "count"]).rename(columns={"count": "n"})
    if "run_dir" in data:
        out["runs"] = groups["run_dir"].agg(lambda dirs: " ".join(sorted(dirs)))
    return out.reset_index().sort_values(by).reset_index(drop=True)


def fmt_mean_std(mean, std=None, n=None, digits: int = 2) -> str:
    """`85.31 ± 0.42 (n=3)`, `85.31 (n=1)`, or `not yet run` when there is no value."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)) or n == 0:
        return "not yet run"
    text = f"{mean:.{digits}f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" ± {std:.{digits}f}"
    return text + (f" (n={int(n)})" if n is not None else "")


def fmt_cell(row) -> str:
    """fmt_mean_std of one row of a summarise() table."""
    return fmt_mean_std(row["mean"], row["std"], row["n"])


def format_summary(table: pd.DataFrame, name: str = "top1 (%)", digits: int = 2) -> pd.DataFrame:
    """A summarise() table with its mean/std/n columns merged into one readable column."""
    out = table.drop(columns=["mean", "std", "n"])
    cells = [fmt_mean_std(m, s, n, digits) for m, s, n in zip(table["mean"], table["std"], table["n"])]
    # the number, then the runs it came from
    out.insert(out.columns.get_loc("runs") if "runs" in out else len(out.columns), name, cells)
    return out
