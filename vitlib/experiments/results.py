"""What a notebook run leaves in its run folder for the report: `result.json` (one flat record,
see `RESULT_FIELDS`), learning curves, and the model a fine-tuning run starts from.

Accuracies in records are percentages (0-100). The report (vitlib.report) reads only these files.
"""
import json
import os
import shlex
from pathlib import Path

import torch

from vitlib.data import get_dataset
from vitlib.device import default_device, device_name, resolve_device
from vitlib.models import create_model
from vitlib.models.weights import load_pretrained, read_state_dict
from vitlib.train import get_recipe
from vitlib.train.runfolder import (
    CHECKPOINT,
    CONFIG,
    RESULT,
    SUMMARY,
    WEIGHTS,
    describe_model,
    image_shape,
    read_json,
    recorded_data,
    write_json,
)

KINDS = ("train", "finetune", "inspect")
COMMON_FIELDS = ("kind", "run", "model", "model_args", "family")
RESULT_FIELDS = {
    "train": ("dataset", "train_size", "img_size", "seed", "top1"),
    "finetune": ("dataset", "train_size", "img_size", "seed", "pretrained_from", "finetune_top1"),
    "inspect": ("source_run", "attention_distance"),
}


def load_data(dataset, data_dir, img_size, train_size, seed, val_size=0):
    """(train, val, test) as the notebooks take them, all resized to `img_size`. val: `val_size`
    images held out of the training split (class-stratified, one fixed draw whatever the seed; None
    when 0); train: the rest, subset to `train_size` images (class-balanced, drawn by `seed`; 0: all).
    data_dir "": the default places ($VITLIB_DATA, then ~/.cache/vitlib)."""
    common = dict(img_size=img_size, val_size=val_size or None)
    train = get_dataset(dataset, "train", data_dir or None, train_size=train_size or None, seed=seed, **common)
    val = get_dataset(dataset, "val", data_dir or None, **common) if val_size else None
    return train, val, get_dataset(dataset, "test", data_dir or None, img_size=img_size)


def training_config(recipe, seed, train_args, *, epochs=0, steps=0, batch_size=0, lr=0.0, precision="auto"):
    """The named recipe with the run's seed, the lengths that are set (0: the recipe's), its
    precision and any other TrainConfig fields (train_args)."""
    if precision != "auto" and train_args.get("precision", precision) != precision:
        raise ValueError(f"precision={precision!r} and train_args precision={train_args['precision']!r}: give one")
    lengths = {k: v for k, v in dict(epochs=epochs, steps=steps, batch_size=batch_size, lr=lr).items() if v}
    return get_recipe(recipe, seed=seed, **lengths, **{"precision": precision, **train_args})


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
        steps=summary["steps"], epochs=summary["epochs"], params=summary["params"],
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


def plot_learning_curves(metrics_csv, title=""):
    """Training loss and evaluation accuracy against epochs, from a run's metrics.csv."""
    import pandas as pd
    from matplotlib.figure import Figure

    m = pd.read_csv(metrics_csv)
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 3.4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(m["epoch"], m["train_loss"], marker="o")
    loss_ax.set(xlabel="epoch", ylabel="training loss (cross-entropy)", title=title)
    for column, label in (("train_acc", "train"), ("val_acc", "validation"), ("eval_acc", "test"),
                          ("eval_acc_ema", "test (EMA)"), ("eval_acc_tta", "test (flip TTA)")):
        if column in m and m[column].notna().any():
            acc_ax.plot(m["epoch"], 100 * m[column], marker="o", label=label)  # fractions -> %
    acc_ax.set(xlabel="epoch", ylabel="top-1 accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc_ax.legend()
    return fig


WEIGHTS_FILE = WEIGHTS


def save_run_weights(model, run_dir, dtype=torch.bfloat16) -> Path:
    """The trained weights alone, as `<run_dir>/weights.safetensors` in bf16 (a few MB for the
    laptop-sized models): what a later run (fine-tuning, inspection) needs from this one, small
    enough to commit, where checkpoint.pt (with the optimiser state) is not. The file's metadata
    carries the class ids and names that the run's config.json records (JSON lists under "classes"
    and "class_names"), so the weights name their classes wherever they are copied."""
    from safetensors.torch import save_file

    state = {k.removeprefix("_orig_mod.").removeprefix("module."): v.detach().to("cpu", dtype).contiguous()
             if v.is_floating_point() else v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": "pt"}
    if Path(run_dir, CONFIG).is_file():
        train = read_json(Path(run_dir, CONFIG)).get("data", {}).get("train", {})
        if "classes" in train:
            metadata.update(classes=json.dumps(train["classes"]),
                            class_names=json.dumps(train.get("class_names", train["classes"])))
    path = Path(run_dir, WEIGHTS_FILE)
    save_file(state, str(path), metadata=metadata)
    return path


def load_run_model(run_dir):
    """The trained model of a finished run folder (eval mode, CPU) and its result record; a
    fine-tuning run's model is its `finetune/` sub-run. The weights come from weights.safetensors
    when the run saved them (always, so a run continued on another machine starts from the same
    numbers), else from checkpoint.pt. A run folder without result.json is read from its config.json
    (`run_record`)."""
    record = run_record(run_dir)
    weights = Path(run_dir, WEIGHTS_FILE)
    ckpt = model_folder(run_dir, record) / CHECKPOINT
    if not weights.is_file() and not ckpt.is_file():
        raise FileNotFoundError(f"{run_dir} has neither {WEIGHTS_FILE} nor {ckpt.relative_to(run_dir)} to load")
    model = create_model(record["model"], num_classes=record["num_classes"], img_size=record["img_size"],
                         in_chans=record["in_chans"], **record["model_args"])
    state = read_state_dict(weights if weights.is_file() else ckpt)
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype) if k in own else v for k, v in state.items()})
    return model.eval(), record


def model_folder(run_dir, record) -> Path:
    """The fit run folder that trained a run's model: the run folder, or a fine-tuning run's `finetune/`."""
    return Path(run_dir, "finetune" if record["kind"] == "finetune" else "")


def recorded_run_data(run_dir, record):
    """The training data a run's config.json records, without its images (classes, their names,
    normalisation, image shape: runfolder.recorded_data); None when the run did not record its classes."""
    config = model_folder(run_dir, record) / CONFIG
    return recorded_data(read_json(config)) if config.is_file() else None


def model_for_finetuning(init, num_classes, img_size, *, model=None, model_args=None, in_chans=None):
    """The model a fine-tuning run starts from, with a new zero-initialised head (App. B.1.1) and
    its position embeddings interpolated to `img_size` (§3.2).

    `init` is a vitlib run folder (its result.json names the model; checkpoint.pt holds the
    weights), or a weights file read by `load_pretrained` (official .npz, timm or torchvision
    state dict, a vitlib checkpoint), for which `model` must be named. Returns (model, source record).
    """
    path = Path(init)
    if path.is_dir():
        net, record = load_run_model(path)
        net.train()
        net.reset_classifier(num_classes)
        if hasattr(net, "set_img_size"):
            net.set_img_size(img_size)
        return net, record
    if not model:
        raise ValueError(f"init={init!r} is a weights file: name its architecture with `model`")
    net = create_model(model, num_classes=num_classes, img_size=img_size, in_chans=in_chans or 3,
                       **(model_args or {}))
    load_pretrained(net, path)
    return net, {"model": model, "model_args": model_args or {}, "run": str(path), "dataset": "external"}
