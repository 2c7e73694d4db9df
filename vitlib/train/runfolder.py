"""The run folder: every file a training run leaves behind, and the only code that writes them
(fit calls the writers below; the file names are these constants, which the report reads too).

    config.json    what was run: TrainConfig, model, data (its classes, their readable names, its
                   normalisation: what naming a prediction needs; + run_info from the caller)
    env.json       where and with what code: git commit, versions, hardware, start time(s)
                   (vitlib.provenance)
    metrics.csv    one row per evaluation
    summary.json   final and best accuracy, time, compute; status "complete" (or "diverged",
                   "interrupted")
    checkpoint.pt  everything needed to continue the run exactly (see fit's resume)
    best.pt        the weights of the evaluation selected on validation (runs with a validation set)

A notebook or `vitlib train` then adds result.json (vitlib.experiments.results: the record the
report reads) and, when asked, weights.safetensors; the study runner adds run.json.

Every write goes through vitlib.fileio (temporary file + rename), so a run killed at any moment
leaves files that parse.
"""
import csv
import dataclasses
import hashlib
import io
import json
import random
from pathlib import Path

import numpy as np
import torch

from vitlib.fileio import atomic_write_bytes, load_checkpoint, read_json, write_json  # noqa: F401 (re-exported)
from vitlib.train.config import TrainConfig

CONFIG, ENV, METRICS, SUMMARY, CHECKPOINT, BEST = ("config.json", "env.json", "metrics.csv", "summary.json",
                                                  "checkpoint.pt", "best.pt")
RESULT, WEIGHTS = "result.json", "weights.safetensors"
RUN_FILES = (CONFIG, ENV, METRICS, SUMMARY, CHECKPOINT)
METRIC_FIELDS = ("epoch", "step", "lr", "train_loss", "train_acc", "val_acc", "eval_acc", "eval_acc_ema",
                 "eval_acc_tta", "images_per_s", "train_s", "elapsed_s")  # train_s: cumulative optimiser-step seconds
# what fit's checkpoint holds (all of it is needed to resume)
CHECKPOINT_KEYS = ("model", "optimizer", "ema", "rng", "step", "epoch", "metrics", "clock", "pending")
# TrainConfig keys that may differ when a run is resumed: they change how fast it runs or how much
# it prints, not what it computes
RUNTIME_KEYS = ("train.log_every", "train.num_workers", "train.compile", "train.compile_mode", "train.device",
                "train.memory_format")


def write_csv(path, rows, fieldnames):
    """Rewrite the whole CSV (it is small: one row per evaluation)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def start(out_dir, record, ckpt, resume, log, env):
    """Create the run folder: config.json on a fresh start, env.json with this process's
    environment `env` (a resume keeps the first start's record and adds one entry per resume)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if ckpt is not None:
        first = read_json(out_dir / ENV)
        env = {**first, "resumes": first.get("resumes", []) + [env]}
    else:
        if resume:
            log(f"resume: no checkpoint in {out_dir}, starting from scratch")
        write_json(out_dir / CONFIG, record)
    write_json(out_dir / ENV, env)


def write_metrics(out_dir, rows):
    write_csv(Path(out_dir) / METRICS, rows, METRIC_FIELDS)


def write_summary(out_dir, summary):
    """summary.json: make_summary's record of a finished run, or {"status": "diverged" |
    "interrupted", "error": ...} of one that stopped."""
    write_json(Path(out_dir) / SUMMARY, summary)


def save_checkpoint(path, state):
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def rng_state():
    """Every global random generator's state, as plain values and tensors."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state):
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def describe_model(model):
    """The model's class, its `config` (create_model records name and arguments there), its family
    ("vit", "hybrid": a ViT on a CNN's feature map, "resnet") and, for a ViT, its shape as built
    (patch_size, depth, embed_dim, num_heads, mlp_dim, pool, pos_emb): what a run records so that
    nothing downstream re-derives it from a name."""
    from vitlib.models.vit import VisionTransformer

    cfg = getattr(model, "config", None)
    if cfg is not None and not isinstance(cfg, dict):
        cfg = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else vars(cfg)
    record = {"class": type(model).__name__, **(cfg or {})}
    if isinstance(model, VisionTransformer):
        record["family"] = "hybrid" if model.patch_embed.backbone is not None else "vit"
        record["shape"] = dict(patch_size=model.patch_size, depth=len(model.blocks), embed_dim=model.embed_dim,
                               num_heads=model.num_heads, mlp_dim=model.blocks[0].mlp.fc1.out_features,
                               pool=model.pool, pos_emb=model.pos_emb)
    else:
        record["family"] = "resnet"
    return record


def image_shape(ds):
    """(C, H, W) of an ImageDataset (in memory) or a FolderDataset (decodes its first image)."""
    return tuple(ds.images.shape[1:]) if hasattr(ds, "images") else tuple(ds[0][0].shape)


def describe_data(ds):
    """What identifies a data set across machines (its file location goes to env.json instead),
    down to its content: a resume on other data is refused. Its classes (label ids) and, where they
    differ from the ids, their readable names travel with the run: `recorded_data` reads them back."""
    names = list(getattr(ds, "class_names", ds.classes))
    return {"name": ds.name, "split": ds.split, "num_images": len(ds),
            "num_classes": ds.num_classes, "image_shape": list(image_shape(ds)), "mean": list(ds.mean),
            "std": list(ds.std), "fingerprint": data_fingerprint(ds), "classes": list(ds.classes),
            **({"class_names": names} if names != list(ds.classes) else {})}


def recorded_data(record):
    """The training data a run's config.json `record` describes, as an ImageDataset without images:
    its classes and their names, normalisation, image shape and name; what a prediction on a new
    image needs (vitlib.data.image_batch), without the data set at hand. None for a record made
    before runs recorded their classes."""
    from vitlib.data import ImageDataset

    train = record.get("data", {}).get("train", {})
    if "classes" not in train:
        return None
    channels, height, width = train["image_shape"]
    return ImageDataset(torch.empty(0, channels, height, width, dtype=torch.uint8), torch.empty(0, dtype=torch.int64),
                        train["classes"], tuple(train["mean"]), tuple(train["std"]), train["name"],
                        split=train["split"], source=CONFIG, class_names=train.get("class_names"))


def data_fingerprint(ds):
    """A hash of what a run reads: the classes, labels and uint8 pixels of an in-memory data set (a
    fraction of a second for CIFAR-10), or the classes, labels and file names of one on disk."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update("\n".join(ds.classes).encode())
    digest.update(ds.labels.numpy().tobytes())
    if hasattr(ds, "images"):
        digest.update(ds.images.contiguous().numpy().tobytes())
    else:
        digest.update("\n".join(Path(p).name for p in ds.paths).encode())
    return digest.hexdigest()


def make_summary(rows, clock, config, step, flops_per_image, params, world_size, precision, selected=None,
                 stopped_early=None, total_steps=None):
    """summary.json: final and best accuracy (from the metrics rows), time and compute, the steps
    taken and the steps the run was set (steps_planned: its budget; more than steps when early
    stopping ended it); with a validation set, the evaluation it selected (its step, validation and
    test accuracy) and where patience stopped the run (None: it ran to the end)."""
    final = rows[-1]
    best = max(rows, key=lambda r: r["eval_acc"])
    images_seen = step * config.batch_size
    summary = {
        "status": "complete",
        "final": {k: final[k] for k in ("eval_acc", "eval_acc_ema", "eval_acc_tta", "train_loss", "train_acc")},
        "best": {"eval_acc": best["eval_acc"], "epoch": best["epoch"], "step": best["step"]},
        "epochs": final["epoch"], "steps": step, "steps_planned": total_steps or step, "images_seen": images_seen,
        "train_seconds": clock["train_s"],  # optimiser steps only: no eval, no compilation
        "compile_seconds": clock["compile_s"] if config.compile else None,
        "eval_seconds": clock["eval_s"], "elapsed_seconds": clock["elapsed_s"],
        "images_per_s": images_seen / clock["train_s"] if clock["train_s"] else None,
        "flops_per_image": flops_per_image,  # forward, at the training resolution
        "train_flops": 3 * flops_per_image * images_seen,  # forward + backward ~ 3 x forward
        "params": params, "precision": precision, "world_size": world_size,
    }
    if selected is not None:
        summary["selected"] = {"on": "val", **{k: selected[k] for k in ("step", "epoch", "val_acc", "eval_acc",
                                                                      "eval_acc_tta", "eval_acc_ema")}}
        summary["stopped_early"] = ({"step": stopped_early, "patience": config.patience}
                                    if stopped_early is not None else None)
        summary["final"]["val_acc"] = final["val_acc"]
    if final["eval_acc_ema"] is not None:
        best_ema = max(rows, key=lambda r: r["eval_acc_ema"])
        summary["best_ema"] = {"eval_acc": best_ema["eval_acc_ema"], "epoch": best_ema["epoch"]}
    return summary


def _flatten(d, prefix=""):
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differing_keys(old, new, ignore=RUNTIME_KEYS):
    """Dotted keys whose values differ between two config records (JSON-normalised). What records
    of earlier versions lack counts only where the old record has it: the resolved precision, the
    data's fingerprints and class lists, and TrainConfig fields added since, at their defaults (the
    value the older version had without naming it). Readable class names never count: they name
    the classes for people, the class ids and the fingerprint say what the run computes."""
    a, b = _flatten(json.loads(json.dumps(old, default=str))), _flatten(json.loads(json.dumps(new, default=str)))
    defaults = {f"train.{k}": v for k, v in TrainConfig().to_dict().items()}
    later = {k for k in b if k not in a and (k == "precision" or k.endswith((".fingerprint", ".classes"))
                                             or k in defaults and b[k] == defaults[k])}
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>") and k not in ignore
                  and k not in later and not k.endswith(".class_names"))


def check_run_folder(out_dir, record, resume):
    """Decide what a run may do with `out_dir`, before anything is written. Returns the checkpoint
    to resume from (loaded here, so that a damaged one stops the run before any file changes), or
    None for a fresh start.

    - no folder, or a folder without run files: a fresh start.
    - config.json of a different run (differing keys other than RUNTIME_KEYS): ValueError naming
      the keys, with or without resume; a folder is never reused for another run.
    - config.json of this run without resume: ValueError, complete or not; a finished or
      interrupted run is never overwritten. Pass resume=True to continue it (or, when it is
      complete, to read its summary back), or pick a new folder.
    - resume with no checkpoint (the run died before its first one): a fresh start, so a launcher
      may always pass --resume.
    - resume from a checkpoint that is empty, truncated or not fit's: ValueError naming it.
    An unreadable config.json or summary.json: ValueError naming it.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir={str(out_dir)!r} exists and is not a folder")
    config_path = out_dir / CONFIG
    if not config_path.exists():
        present = [f for f in RUN_FILES if (out_dir / f).exists()]
        if present:
            raise ValueError(f"out_dir={str(out_dir)!r} holds {', '.join(present)} but no config.json: "
                             "not a run folder vitlib can check; choose a new folder")
        return None
    diff = differing_keys(read_json(config_path), record)
    if diff:
        hints = [hint for prefix, hint in (("data.", "other data than the run's"),
                                           ("precision", "another precision: give the one it trained in"))
                 if any(k.startswith(prefix) for k in diff)]
        raise ValueError(f"out_dir={str(out_dir)!r} holds a different run; config.json differs in: "
                         f"{', '.join(diff)}{' (' + '; '.join(hints) + ')' if hints else ''}. Choose a new folder")
    if not resume:
        summary = out_dir / SUMMARY
        status = read_json(summary).get("status", "unknown") if summary.exists() else "unfinished"
        raise ValueError(f"out_dir={str(out_dir)!r} already holds this run (status: {status}); pass "
                         "resume=True (--resume) to continue it, or choose a new folder")
    path = out_dir / CHECKPOINT
    if not path.exists():
        return None
    remedy = "restore it, or start the run again in a new folder"
    try:
        checkpoint = load_checkpoint(path)
    except ValueError as err:
        raise ValueError(f"cannot resume: {err}; {remedy}") from err
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise ValueError(f"cannot resume: {path} is not a checkpoint of vitlib.train.fit (it has no "
                         f"{', '.join(missing)}); {remedy}")
    return checkpoint
