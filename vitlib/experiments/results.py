"""What a notebook run leaves in its run folder for the report: `result.json`, one flat record
(see `RESULT_FIELDS`), written by `write_result` and read back by `run_record`.

Accuracies in records are percentages (0-100). The report (vitlib.report) reads only these files.
The notebooks' other helpers: `setup` (their data and training config), `trained` (a trained
model from its run folder), `curves` (a run's learning curves).
"""
import json
import os
import shlex
from pathlib import Path

from vitlib.device import default_device, device_name, resolve_device
from vitlib.train.runfolder import CONFIG, RESULT, SUMMARY, describe_model, image_shape, read_json, write_json

KINDS = ("train", "finetune", "inspect")
COMMON_FIELDS = ("kind", "run", "model", "model_args", "family")
RESULT_FIELDS = {
    "train": ("dataset", "train_size", "img_size", "seed", "top1"),
    "finetune": ("dataset", "train_size", "img_size", "seed", "pretrained_from", "finetune_top1"),
    "inspect": ("source_run", "attention_distance"),
}


def accuracy_record(summary):
    """result.json's accuracies (percent) of a fit run. Without a validation split: the last
    evaluation's (top1, flip-TTA, EMA) and the best test accuracy seen (best_top1). With one, the
    evaluation selected on validation is the run's result, as in the paper (early stopping on a
    held-out split): top1 and the others are that evaluation's test accuracies, beside val_top1,
    selected_step, the last evaluation's last_top1 and where patience stopped the run (None: it
    ran to the end); the test set chose nothing, so no best_top1."""
    final, selected = summary["final"], summary.get("selected")
    if selected is None:
        return dict(top1=percent(final["eval_acc"]), best_top1=percent(summary["best"]["eval_acc"]),
                    top1_ema=percent(final["eval_acc_ema"]), top1_tta=percent(final["eval_acc_tta"]))
    stopped = summary.get("stopped_early")
    return dict(top1=percent(selected["eval_acc"]), top1_ema=percent(selected["eval_acc_ema"]),
                top1_tta=percent(selected["eval_acc_tta"]), val_top1=percent(selected["val_acc"]),
                selected_step=selected["step"], last_top1=percent(final["eval_acc"]),
                stopped_early_step=stopped["step"] if stopped else None)


def training_record(net, summary, train_data, config, *, dataset, recipe):
    """result.json's fields that every training notebook records of one fit run: the model's
    family and shape as built, the data, the run's length and compute, its time and device."""
    description = describe_model(net)
    in_chans, _, img_size = image_shape(train_data)
    return dict(
        family=description["family"], shape=description.get("shape"), dataset=dataset,
        train_size=len(train_data), img_size=img_size, num_classes=train_data.num_classes,
        in_chans=in_chans, seed=config.seed, recipe=recipe, lr=config.lr,
        steps=summary["steps"], steps_planned=summary.get("steps_planned", summary["steps"]),
        epochs=summary["epochs"], params=summary["params"],
        flops_per_image=summary["flops_per_image"], train_flops=summary["train_flops"],
        train_seconds=summary["train_seconds"], images_per_s=summary["images_per_s"],
        precision=summary["precision"], device=device_name(resolve_device(config.device)))


def invocation(notebook, params):
    """The command that re-makes a run: the batch runner exports its own; a notebook run by hand
    is re-made by papermill with the same parameters."""
    if os.environ.get("VITLIB_COMMAND"):
        return os.environ["VITLIB_COMMAND"]
    out = Path(params.get("out_dir", "."), Path(notebook).name)
    return (f"papermill notebooks/{Path(notebook).name} {shlex.quote(str(out))} "
            f"-y {shlex.quote(json.dumps(params))}")


def percent(fraction):
    """A fraction (0-1) as a percentage with two decimals; None stays None."""
    return None if fraction is None else round(100 * fraction, 2)


def write_result(out_dir, notebook, parameters, /, **record):
    """Write `<out_dir>/result.json` atomically after checking the fields its kind needs;
    `notebook` and `parameters` (the validated ones) record how to re-make the run."""
    kind = record.get("kind")
    if kind not in KINDS:
        raise ValueError(f"result kind={kind!r} is not one of {KINDS}")
    missing = [f for f in COMMON_FIELDS[1:] * (kind != "inspect") + RESULT_FIELDS[kind] if f not in record]
    if missing:
        raise ValueError(f"result.json for kind={kind!r} lacks {', '.join(missing)}")
    record.setdefault("command", invocation(notebook, parameters))
    record.setdefault("parameters", parameters)
    record.setdefault("device", device_name(default_device()))  # notebooks pass the device they used
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / RESULT, record)
    return record


def read_result(run_dir):
    path = Path(run_dir) / RESULT
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished vitlib run folder (no result.json)")
    return json.loads(path.read_text())


# what describe_model adds to create_model's arguments in config.json's model record
DESCRIBED_MODEL_KEYS = ("class", "name", "num_classes", "img_size", "in_chans", "family", "shape")


def run_record(run_dir):
    """The record that names a finished run's model and data: its result.json, or for a run folder
    that fit wrote without one (the speedruns': config.json, summary.json, weights), the same keys
    read from config.json (the image size is the training data's, the size the weights last saw)."""
    run = Path(run_dir)
    if (run / RESULT).is_file() or not (run / CONFIG).is_file():
        return read_result(run)
    config = read_json(run / CONFIG)
    status = read_json(run / SUMMARY).get("status") if (run / SUMMARY).is_file() else "unfinished"
    if status != "complete":
        raise FileNotFoundError(f"{run_dir} is not a finished vitlib run folder (no result.json; run status: {status})")
    model, train = config["model"], config["data"]["train"]
    if "name" not in model:
        raise ValueError(f"{run / CONFIG} does not name its model (a model not built by vitlib.create_model)")
    return {"kind": "train", "run": run.name, "model": model["name"],
            "model_args": {k: v for k, v in model.items() if k not in DESCRIBED_MODEL_KEYS},
            "family": model.get("family"), "dataset": train["name"], "img_size": train["image_shape"][-1],
            "num_classes": model["num_classes"], "in_chans": train["image_shape"][0]}
