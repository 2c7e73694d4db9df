"""A trained model and its run folder: the weights a run saves for later runs (weights.safetensors),
the model a finished run folder holds, and the model a fine-tuning run starts from."""
import json
from pathlib import Path

import torch

from vitlib.models import create_model
from vitlib.models.weights import load_pretrained, read_state_dict
from vitlib.train.runfolder import CHECKPOINT, CONFIG, WEIGHTS, read_json, recorded_data

from .results import run_record


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
    path = Path(run_dir, WEIGHTS)
    save_file(state, str(path), metadata=metadata)
    return path


def load_run_model(run_dir):
    """The trained model of a finished run folder (eval mode, CPU) and its result record; a
    fine-tuning run's model is its `finetune/` sub-run. The weights come from weights.safetensors
    when the run saved them (always, so a run continued on another machine starts from the same
    numbers), else from checkpoint.pt. A run folder without result.json is read from its config.json
    (`run_record`)."""
    record = run_record(run_dir)
    weights = Path(run_dir, WEIGHTS)
    ckpt = model_folder(run_dir, record) / CHECKPOINT
    if not weights.is_file() and not ckpt.is_file():
        raise FileNotFoundError(f"{run_dir} has neither {WEIGHTS} nor {ckpt.relative_to(run_dir)} to load")
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
