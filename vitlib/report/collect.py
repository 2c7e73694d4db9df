"""Load every run record under `<results_dir>/runs/**` into one pandas DataFrame, and summarise
it as mean ± std over seeds.

A run is a folder holding `result.json` (the notebook's record, `vitlib.experiments.results`);
`run.json` (the batch runner's record), `summary.json` and `env.json` (written by vitlib.train.fit,
in the folder itself or in a subfolder) add status, wall time and hardware when present. Folders
the runner moved aside (`<run>.stale-<time>`) are ignored.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

KINDS = ("train", "finetune", "inspect")
# Statuses of run.json whose result.json may be stale or partial: listed, never used in claims.
UNUSABLE_STATUS = ("failed", "running", "interrupted")
REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"  # the study files a report knows of before they run
VIT_DEFAULTS = {"pos_emb": "learned", "pool": "token"}  # VisionTransformer's constructor defaults

# Columns every runs table has, even when no run exists yet (so every filter works on it).
COLUMNS = [
    "run_dir", "kind", "study", "run", "model", "label", "family", "dataset", "train_size",
    "img_size", "seed", "recipe", "lr", "steps", "epochs", "params", "flops_per_image",
    "train_flops", "train_seconds", "images_per_s", "device", "precision", "command", "model_args",
    "top1", "best_top1", "top1_ema", "top1_tta", "accuracy",
    "pretrained_from", "pretrain_dataset", "pretrain_size", "finetune_top1", "scratch_top1",
    "few_shot", "few_shot_std", "few_shot_5", "few_shot_5_std",
    "source_run", "attention_distance", "image_size", "patch_size", "erf_radius",
    "pos_similarity_neighbour_minus_far", "figures",
    "pos_emb", "pool", "patch", "depth", "width",
    "status", "usable", "runner_seconds", "study_file", "gpus", "torch", "cuda", "path",
]


def display_root(results_dir) -> str:
    """How the report names `results_dir`: relative to the working directory when inside it
    (`results`, `results/demo`), else just its folder name."""
    path = Path(results_dir).resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def find_results(results_dir) -> list[Path]:
    """Every `result.json` under `<results_dir>/runs/`, sorted, skipping `*.stale-*` folders."""
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results_dir {str(root)!r} is not a directory")
    files = sorted((root / "runs").rglob("result.json"))
    return [f for f in files if not any(".stale-" in part for part in f.relative_to(root).parts)]


def _read_json(path: Path, required: bool = False):
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path} does not exist")
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def _label(model, model_args: dict) -> str:
    """`vit_s4` or `vit_s4 (pool=gap, depth=6)`: one name per model configuration."""
    if not model_args:
        return str(model)
    return f"{model} ({', '.join(f'{k}={v}' for k, v in sorted(model_args.items()))})"


def _hardware(folder: Path) -> dict:
    """GPU names and versions from every env.json in the run folder (01 writes one, 02 two), and
    the precision every training in it resolved "auto" to (its summary.json)."""
    gpus, torch_versions, cuda_versions = set(), set(), set()
    for env_file in sorted(folder.rglob("env.json")):
        env = _read_json(env_file) or {}
        gpus.update(env.get("gpus") or [])
        torch_versions.add(env.get("torch"))
        cuda_versions.add(env.get("cuda"))
    precisions = {(_read_json(f) or {}).get("precision") for f in folder.rglob("summary.json")}
    join = lambda values: ", ".join(sorted(str(v) for v in values if v)) or None  # noqa: E731
    return {"gpus": join(gpus), "torch": join(torch_versions), "cuda": join(cuda_versions),
            "precision": join(precisions)}


def load_run(result_file: Path, root_name: str, results_dir: Path) -> dict:
    """One row: result.json's fields plus status, runner time and hardware of its folder."""
    record = _read_json(result_file, required=True)
    if not isinstance(record, dict) or record.get("kind") not in KINDS:
        raise ValueError(f"{result_file}: 'kind' must be one of {', '.join(KINDS)}, "
                         f"got {record.get('kind') if isinstance(record, dict) else record!r}")
    folder = result_file.parent
    runner = _read_json(folder / "run.json") or {}
    summary = _read_json(folder / "summary.json") or {}
    row = dict(record)
    model_args = row.get("model_args") or {}
    row["model_args"] = model_args
    family = row.get("family")
    row["run_dir"] = f"{root_name}/{folder.relative_to(results_dir).as_posix()}"
    row["path"] = str(folder)
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
    if row.get("train_seconds") is None:
        row["train_seconds"] = summary.get("train_seconds")
    row["study"] = row.get("study") or runner.get("study") or _folder_study(folder, results_dir)
    row["status"] = runner.get("status", "unknown")
    row["usable"] = row["status"] not in UNUSABLE_STATUS and summary.get("status") not in ("diverged", "interrupted")
    row["runner_seconds"] = runner.get("duration_s")
    row["study_file"] = runner.get("study_file")
    row.update(_hardware(folder))
    return row


def _folder_study(folder: Path, results_dir: Path) -> str:
    """The study of a run without a recorded one: its first folder under runs/ (runs/<study>/<run>)."""
    parts = folder.relative_to(Path(results_dir) / "runs").parts
    return parts[0] if len(parts) > 1 else "unnamed"


def load_runs(results_dir) -> pd.DataFrame:
    """Every run under `<results_dir>/runs/**` as one row (columns: `COLUMNS` plus any extra
    field of result.json). Empty, with the same columns, when nothing has run yet."""
    results_dir = Path(results_dir)
    root_name = display_root(results_dir)
    rows = [load_run(f, root_name, results_dir) for f in find_results(results_dir)]
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = pd.Series(dtype=object if col not in ("usable",) else bool)
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS + extra].reset_index(drop=True)


@dataclass(frozen=True)
class StudyInfo:
    """A study of the report: its name, its study file (None for runs made without one) and the
    command that (re-)runs it."""
    name: str
    file: str | None = None
    command: str | None = None


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
            declared[name] = StudyInfo(name, rel, f"python -m vitlib.experiments run {rel}")
    names = [*declared, *(s for s in runs["study"].dropna().unique() if s not in declared)]
    counts = usable(runs)["study"].value_counts()
    names.sort(key=lambda name: -counts.get(name, 0))
    return [declared.get(name) or _undeclared(name, runs) for name in names]


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
    """Mean, sample std (NaN for one seed) and n of `value` per group of `by`, rows with a
    missing value dropped; sorted by `by`."""
    data = df.dropna(subset=[value])
    if data.empty:
        return pd.DataFrame(columns=[*by, "mean", "std", "n"])
    out = (data.groupby(by, dropna=False)[value].agg(["mean", "std", "count"])
           .rename(columns={"count": "n"}).reset_index())
    return out.sort_values(by).reset_index(drop=True)


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
    out[name] = [fmt_mean_std(m, s, n, digits) for m, s, n in
                 zip(table["mean"], table["std"], table["n"])]
    return out
