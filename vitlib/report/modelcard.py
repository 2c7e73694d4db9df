"""A Hugging Face model card for the weights a run folder ships: `<run>/README.md`.

    vitlib model-card results/runs/laptop/pre-vit-n100000-s0     # writes its README.md

YAML front matter as the Hub reads it (license, library_name, tags, datasets, metrics,
pipeline_tag, a model-index with the measured accuracy), then the model, its training data, the
recipe, the results, how to use it, its limits and the command that re-makes it. Every number
and name comes from the run's own records: config.json, summary.json and env.json (vitlib.train.fit),
result.json where a notebook or `vitlib train` wrote one, eval_*.json of `vitlib eval`, and the
weights file; nothing is typed in by hand, so the card is re-made, never edited.
"""
import json
import os
import shlex
from pathlib import Path

import yaml

from vitlib.data.archives import KINDS as JPEG_COPIES
from vitlib.data.archives import QUALITY
from vitlib.experiments.results import DESCRIBED_MODEL_KEYS
from vitlib.fileio import atomic_write_text
from vitlib.train.runfolder import CONFIG, ENV, RESULT, SUMMARY, WEIGHTS, read_json

CARD = "README.md"
LICENSE = "unknown"  # the project states no licence of its own; the card names the training data's terms
# the data sets the Hub knows: its id, the Hub split that is the run's held-out one, and what to say of it
DATA = {
    "cifar10": dict(title="CIFAR-10", hub="uoft-cs/cifar10", split="test", order="its sorted class names",
                    terms="CIFAR-10 (Krizhevsky, *Learning Multiple Layers of Features from Tiny Images*, 2009)"),
    "cifar100": dict(title="CIFAR-100", hub="uoft-cs/cifar100", split="test", order="its sorted fine class names",
                     terms="CIFAR-100 (Krizhevsky, *Learning Multiple Layers of Features from Tiny Images*, 2009)"),
    "tiny-imagenet": dict(title="Tiny-ImageNet-200", hub="zh-plus/tiny-imagenet", split="valid",
                          order="the sorted WordNet ids of wnids.txt, named in words.txt",
                          terms="Tiny-ImageNet, derived from ImageNet: non-commercial research use only",
                          note="Its test split has no labels, so the held-out set is its labelled val split "
                               "(50 images per class). Its classes overlap in meaning with CIFAR-10's (cats, "
                               "dogs, cars, trucks, frogs, ships, ...)."),
}
PAPER = "[Dosovitskiy et al., ICLR 2021](https://arxiv.org/abs/2010.11929)"


def write_model_card(run_dir, force=False):
    """Write `<run_dir>/README.md` from the run's records; returns (path, written). An existing
    README.md that differs from the card is kept unless `force` (one that equals it: written False)."""
    card = model_card(run_dir)
    path = Path(run_dir, CARD)
    if path.is_file() and path.read_text(encoding="utf-8") == card:
        return path, False
    if path.exists() and not force:
        raise ValueError(f"{path} exists and is not the card this run's records give: pass --force to replace it")
    atomic_write_text(path, card)
    return path, True


def model_card(run_dir) -> str:
    """The card's text (see the module docstring)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no such folder)")
    missing = [name for name in (WEIGHTS, CONFIG, SUMMARY) if not (run / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir} has no {', '.join(missing)}: a model card describes the "
                                f"{WEIGHTS} of a finished training run (notebook 01's save_weights, or "
                                "vitlib.experiments.trained.save_run_weights)")
    rec = dict(config=read_json(run / CONFIG), summary=read_json(run / SUMMARY),
               env=read_json(run / ENV) if (run / ENV).is_file() else {},
               result=read_json(run / RESULT) if (run / RESULT).is_file() else {}, weights=_weights(run / WEIGHTS),
               evals=[read_json(p) for p in sorted(run.glob("eval_*.json"))], name=run.resolve().name,
               path=display_path(run))
    if rec["summary"].get("status") != "complete":
        raise ValueError(f"{run_dir}: summary.json says status {rec['summary'].get('status')!r}, not complete: "
                         "a card describes a finished run")
    if "name" not in rec["config"]["model"]:
        raise ValueError(f"{run / CONFIG} does not name its model (a model not built by vitlib.create_model)")
    rec["facts"] = _facts(rec)
    sections = (_front_matter, _title, _model, _data, _recipe, _results, _usage, _limitations, _remake)
    return "\n".join(section(rec) for section in sections)


def display_path(path) -> str:
    """A path as the card shows it: relative to the working directory when inside it, else as given
    (the report's rule for the folders it names)."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def _weights(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        dtypes = {f.get_slice(key).get_dtype() for key in f.keys()}
        floats = sorted(d for d in dtypes if "F" in d) or sorted(dtypes)  # BF16, F16, F32; not the integer buffers
        return dict(size=path.stat().st_size, dtypes=floats, metadata=f.metadata() or {})


def _facts(rec):
    """What several sections use: the model and data records, the class names (config.json, else
    the weights' metadata), the accuracy of the weights (the last evaluation), the data's source."""
    config, summary = rec["config"], rec["summary"]
    model, data = config["model"], config["data"]
    train = data["train"]
    names = train.get("class_names", train.get("classes"))
    if names is None and "class_names" in rec["weights"]["metadata"]:
        names = json.loads(rec["weights"]["metadata"]["class_names"])
    final = summary["final"]
    return dict(model=model, family=model.get("family", "model"), train=train, eval=data["eval"], val=data.get("val"),
                dataset=train["name"], info=DATA.get(train["name"], {}), classes=names,
                top1=_pct(final["eval_acc"]), tta=_pct(final.get("eval_acc_tta")),
                source=Path(rec["env"].get("data_source", {}).get("train", "")).name,
                overrides={k: v for k, v in model.items() if k not in DESCRIBED_MODEL_KEYS})


def _pct(fraction):
    return None if fraction is None else round(100 * fraction, 2)


def _front_matter(rec):
    f = rec["facts"]
    hub = f["info"].get("hub")
    tags = ["image-classification", {"vit": "vision-transformer", "hybrid": "vision-transformer",
                                     "resnet": "resnet"}.get(f["family"], f["family"]), "vitlib", "pytorch",
            "safetensors", f["dataset"]]
    metrics = [dict(type="accuracy", name="top-1 accuracy (%)", value=f["top1"])]
    if f["tta"] is not None:
        metrics.append(dict(type="accuracy", name="top-1 accuracy, flip-TTA (%)", value=f["tta"]))
    dataset = dict(type=hub or f["dataset"], name=_data_title(f), split=f["info"].get("split", f["eval"]["split"]))
    meta = dict(license=LICENSE, library_name="vitlib", pipeline_tag="image-classification", tags=tags,
                **({"datasets": [hub]} if hub else {}), metrics=["accuracy"],
                **{"model-index": [dict(name=rec["name"], results=[dict(
                    task=dict(type="image-classification", name="Image Classification"),
                    dataset=dataset, metrics=metrics)])]})
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _data_title(f):
    title = f["info"].get("title", f["dataset"])
    return f"{title} ({_copy(f)})" if _copy(f) else title


def _copy(f):
    """'JPEG quality-75 copy' when the run read one of the project's JPEG archives (env.json)."""
    kind = next((k for k in JPEG_COPIES if f["source"] == f"{k}-jpeg.tar.gz"), None)
    return f"JPEG quality-{QUALITY} copy, {f['source']}" if kind else ""


def _title(rec):
    f, summary = rec["facts"], rec["summary"]
    size = f["train"]["image_shape"][-1]
    return (f"# {rec['name']}: {f['model']['name']} on {f['info'].get('title', f['dataset'])}\n\n"
            f"A {_architecture(f)} with {summary['params']:,} parameters, trained on "
            f"{f['train']['num_images']:,} {f['info'].get('title', f['dataset'])} images at {size} × {size} px "
            f"for {summary['steps']:,} steps: **{f['top1']:.2f}% top-1** on its {f['eval']['num_images']:,} "
            f"held-out images" + (f" ({f['tta']:.2f}% with flip-TTA)" if f["tta"] is not None else "") + ". "
            f"Made by vitlib, a reproduction of {PAPER}; this card is generated from the run folder's records "
            f"by `vitlib model-card {rec['path']}`.\n")


def _architecture(f):
    shape = f["model"].get("shape")
    if shape:
        kind = "hybrid ViT (its patches from a ResNet's feature map)" if f["family"] == "hybrid" else "ViT"
        return (f"{kind} (patch {shape['patch_size']}, depth {shape['depth']}, width {shape['embed_dim']}, "
                f"{shape['num_heads']} heads, MLP {shape['mlp_dim']}, {shape['pool']} pooling, "
                f"{shape['pos_emb']} position embeddings)")
    family = {"resnet": "ResNet"}.get(f["family"], f["family"])
    return f"{family} ({', '.join(f'{k} {v}' for k, v in f['overrides'].items()) or 'its default shape'})"


def _constructor(f):
    shape = f["train"]["image_shape"]
    args = dict(num_classes=f["model"]["num_classes"], img_size=shape[-1], in_chans=shape[0], **f["overrides"])
    text = ", ".join(f"{k}={json.dumps(v) if isinstance(v, str) else repr(v)}" for k, v in args.items())
    return f'vitlib.create_model("{f["model"]["name"]}", {text})'


def _model(rec):
    f, summary, weights = rec["facts"], rec["summary"], rec["weights"]
    c, h, w = f["train"]["image_shape"]
    rows = [("architecture", f"`{f['model']['name']}`: {_architecture(f)}"),
            ("parameters", f"{summary['params']:,}"),
            ("input", f"{c} × {h} × {w} ({'RGB' if c == 3 else 'grey'}), scaled to 0-1 and normalised with "
                      f"mean {_floats(f['train']['mean'])}, std {_floats(f['train']['std'])}"),
            ("forward FLOPs per image", f"{summary['flops_per_image'] / 1e9:.3f} G"),
            ("output", f"{f['model']['num_classes']} class logits"),
            ("weights", f"`{WEIGHTS}`: {', '.join(weights['dtypes'])}, {weights['size'] / 1e6:.1f} MB"),
            ("built by", f"`{_constructor(f)}`")]
    out = ["## Model\n", "| | |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in rows], ""]
    if f["classes"]:
        listed = ", ".join(f"{i}: {name}" for i, name in enumerate(f["classes"]))
        out.append(f"Classes (label: name), as the run recorded them (config.json `data.train`): {listed}.\n"
                   if len(f["classes"]) <= 20 else
                   f"<details><summary>The {len(f['classes'])} classes (label: name), as the run recorded them "
                   f"(config.json `data.train`)</summary>\n\n{listed}\n\n</details>\n")
    else:
        order = f["info"].get("order", "its sorted class folder names")
        out.append(f"Classes: the run predates recorded class lists. Label i is the i-th class of "
                   f"{f['info'].get('title', f['dataset'])} in vitlib's order ({order}); `vitlib predict` reads "
                   "their names from the data set.\n")
    return "\n".join(out)


def _floats(values):
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def _data(rec):
    f = rec["facts"]
    size = f["train"]["image_shape"][-1]
    title = f["info"].get("title", f["dataset"])
    held = (f"; {f['val']['num_images']:,} training images held out as a validation split"
            if f["val"] else "")
    lines = ["## Training data\n",
             f"- {title}: {f['train']['num_images']:,} training images{held}; evaluated on its "
             f"{f['eval']['num_images']:,} `{f['eval']['split']}` images. All at {size} × {size} px, "
             f"{f['train']['num_classes']} classes."]
    if _copy(f):
        example = (" (a public CNN that reaches 94.0% on the originals reached 90.7% on this copy)"
                   if f["dataset"] == "cifar10" else "")
        lines.append(f"- Read from the project's {_copy(f)}: JPEG at quality {QUALITY}, not the original pixels, "
                     f"so accuracy is lower than on the originals{example}; comparisons inside the project hold, "
                     "absolute numbers are not comparable with published ones. `vitlib make-data` re-makes the "
                     "copy from the official download.")
    if f["info"].get("note"):
        lines.append(f"- {f['info']['note']}")
    if f["info"].get("terms"):
        lines.append(f"- Source: {f['info']['terms']}; not redistributed with this model.")
    return "\n".join(lines) + "\n"


def _recipe(rec):
    train, summary, result = rec["config"]["train"], rec["summary"], rec["result"]
    augment = train.get("augment") or {}
    crop = augment.get("crop")
    augmentation = ", ".join(filter(None, [
        crop and (f"{crop} (padding {augment.get('padding')}, {augment.get('padding_mode')})" if crop == "pad_crop"
                  else f"{crop} (scale {augment.get('rrc_scale')})"),
        augment.get("flip") and "horizontal flip",
        augment.get("randaugment_ops") and f"RandAugment ({augment['randaugment_ops']} ops, magnitude "
                                           f"{augment.get('randaugment_magnitude')})",
        augment.get("mixup_alpha") and f"Mixup α {augment['mixup_alpha']}",
        augment.get("cutmix_alpha") and f"CutMix α {augment['cutmix_alpha']}"])) or "none"
    warmup = f"{train['warmup_steps']} steps" if train.get("warmup_steps") else f"{train.get('warmup_epochs')} epochs"
    rows = [("recipe", f"`{result['recipe']}` (vitlib/train/config.py)" if result.get("recipe") else None),
            ("optimiser", f"{train['optimizer']}, betas {tuple(train['betas'])}, weight decay {train['weight_decay']}"
             if train["optimizer"] in ("adamw", "adam") else
             f"{train['optimizer']}, momentum {train['momentum']}{' (Nesterov)' if train.get('nesterov') else ''}, "
             f"weight decay {train['weight_decay']}"),
            ("learning rate", f"{train['lr']}, {train['schedule']} schedule, warm-up {warmup}"),
            ("batch size", f"{train['batch_size']}" + (f" × {train['grad_accum']} accumulated"
                                                     if train.get("grad_accum", 1) > 1 else "")),
            ("length", f"{summary['steps']:,} steps, {summary['epochs']:g} epochs, "
                       f"{summary['images_seen']:,} images seen"),
            ("regularisation", f"label smoothing {train['label_smoothing']}, "
                               + (f"gradient norm clipped at {train['clip_grad']}" if train["clip_grad"]
                                  else "no gradient clipping")
                               + (f", EMA {train['ema_decay']}" if train.get("ema_decay") else "")),
            ("augmentation", augmentation),
            ("precision", f"{summary['precision']} (fp32 master weights)" if summary["precision"] == "bf16"
             else summary["precision"]),
            ("seed", train["seed"])]
    return "\n".join(["## Training recipe\n", "| | |", "| --- | --- |",
                      *[f"| {k} | {v} |" for k, v in rows if v is not None],
                      "", f"Every setting: `{CONFIG}` (`train`).\n"])


def _results(rec):
    f, summary, env = rec["facts"], rec["summary"], rec["env"]
    held = f"{f['eval']['num_images']:,} {f['info'].get('title', f['dataset'])} `{f['eval']['split']}` images"
    rows = [(f"last evaluation (these weights), {held}", f"{f['top1']:.2f}%")]
    if f["tta"] is not None:
        rows.append(("the same with flip-TTA (the image and its mirror averaged)", f"{f['tta']:.2f}%"))
    selected = summary.get("selected")
    if selected:
        rows.append((f"the evaluation selected on validation (step {selected['step']:,}, validation "
                     f"{_pct(selected['val_acc']):.2f}%; the run's result, not these weights)",
                     f"{_pct(selected['eval_acc']):.2f}%"))
    for e in rec["evals"]:
        rows.append((f"`{e['command']}`: {e['images']:,} {e['dataset']} `{e['split']}` images, flip-TTA "
                     f"{e['top1_tta']:.2f}%", f"{e['top1']:.2f}%"))
    gpus = env.get("gpus") or []
    hardware = (f"{summary.get('world_size', 1)} × {gpus[0]}" if env.get("device") == "cuda" and gpus
                else env.get("cpu"))
    budget = (f"{summary['train_seconds']:,.0f} s of training (optimiser steps only) at "
              f"{summary['images_per_s']:,.0f} images/s, {summary['train_flops'] / 1e12:,.1f} TFLOPs "
              f"(3 × forward), {summary['precision']}")
    code = env.get("git_commit") and (f"git commit {env['git_commit'][:12]}"
                                      + (" with uncommitted changes" if env.get("git_dirty") else ""))
    notes = [f"- Budget: {budget}.", f"- Hardware: {hardware or 'not recorded'}; torch {env.get('torch', '?')}, "
             f"started {env.get('start_time', '?')}" + (f", {code}" if code else "") + f" (`{ENV}`).",
             "- Accuracy measured during training with the fp32 weights; the shipped weights are rounded to "
             f"{', '.join(rec['weights']['dtypes'])}" + (" (their own accuracy: the `vitlib eval` row above)."
                                                         if rec["evals"] else
                                                         f"; `vitlib eval {rec['path']}` measures theirs.")]
    return "\n".join(["## Results\n", "| evaluation | top-1 |", "| --- | --- |",
                      *[f"| {k} | {v} |" for k, v in rows], "", *notes,
                      f"\nRecords: `{SUMMARY}`, `metrics.csv` (every evaluation)"
                      + (f", `{RESULT}`" if rec["result"] else "") + ".\n"])


def _usage(rec):
    f, path = rec["facts"], rec["path"]
    size, recorded = f["train"]["image_shape"][-1], bool(f["train"].get("classes"))
    commands = [f"vitlib predict my_image.jpg --run {path}  # the 5 likeliest classes"]
    if f["family"] != "resnet":
        commands.append(f"vitlib attention my_image.jpg --run {path} --out rollout.png  # attention rollout (Fig. 6)")
    commands.append(("VITLIB_DATA=/path/to/data " if f["dataset"] in DATA else "")
                    + f"vitlib eval {path}  # top-1 on the {f['eval']['split']} split")
    imports = ["import torch", "from safetensors.torch import load_file", "", "import vitlib"]
    if recorded:  # the run's config.json names the classes and says how to prepare an image
        imports = ["import json", "", *imports, "from vitlib.data import image_batch",
                   "from vitlib.train.runfolder import recorded_data"]
        data = [f'config = json.load(open("{CONFIG}"))',
                "data = recorded_data(config)  # the classes, their names, normalisation and size the run recorded"]
    else:
        imports = [*imports, "from vitlib.data import get_dataset, image_batch"]
        data = [f'data = get_dataset("{f["dataset"]}", "test", img_size={size})  # the run recorded no classes']
    python = [*imports, "", f"model = {_constructor(f)}",
              f'model.load_state_dict({{k: v.float() for k, v in load_file("{WEIGHTS}").items()}})', "model.eval()",
              *data, 'x = image_batch("my_image.jpg", data)  # (1, C, H, W): resized and normalised as in training',
              "with torch.no_grad():", "    probs = model(x).softmax(dim=-1)[0]",
              "print(data.class_names[int(probs.argmax())], float(probs.max()))"]
    return ("## How to use\n\nWith vitlib (`pip install -e .` in the project), from the project's root"
            + ("" if recorded else "; the data set names the classes, since the run recorded none") + ":\n\n"
            "```bash\n" + "\n".join(commands) + "\n```\n\n"
            f"An image is resized to {size} px, as the training images were. In Python, from this folder (or a "
            "copy of it, as downloaded from a model hub):\n\n```python\n" + "\n".join(python) + "\n```\n\n"
            "`vitlib.experiments.trained.load_run_model(folder)` builds and loads the model in one call.\n")


def _limitations(rec):
    f, summary = rec["facts"], rec["summary"]
    size = f["train"]["image_shape"][-1]
    return ("## Limitations\n\n"
            f"- A research artefact of a reproduction study, not a product: small ({summary['params'] / 1e6:.1f}M "
            f"parameters), trained on {f['train']['num_images']:,} images for {summary['steps']:,} steps, one seed. "
            "The paper's models pre-train on 14M-303M images at 224 px; this one shows what the architecture does "
            "with little data and compute.\n"
            f"- It sees {size} × {size} px: any image is shrunk to that, so it classifies thumbnails, and only into "
            f"its {f['model']['num_classes']} {f['info'].get('title', f['dataset'])} classes (an image of anything "
            "else still gets one of them, often with high confidence).\n"
            "- Not evaluated for calibration, robustness to corruptions or distribution shift, or fairness.\n"
            + (f"- The training data's terms apply: {f['info']['terms']}.\n" if f["info"].get("terms") else ""))


def _remake(rec):
    f, result, env = rec["facts"], rec["result"], rec["env"]
    if result.get("command"):
        command, source = result["command"], RESULT
    elif env.get("command"):
        command, source = command_line(env["command"]), ENV
    else:
        return "## Re-make this run\n\nThe run recorded no command.\n"
    named = "VITLIB_DATA=" in command or "--data-dir" in command  # the command says where the data are
    data_env = "VITLIB_DATA=/path/to/data " if f["dataset"] in DATA and not named else ""
    data = (f" `/path/to/data` holds `{f['source']}`" + (" (`vitlib make-data` re-makes it)." if _copy(f) else ".")
            if f["source"] else "")
    return (f"## Re-make this run\n\nFrom the project's root, as recorded in `{source}`:{data}\n\n"
            f"```bash\n{data_env}{command}\n```\n")


def command_line(argv) -> str:
    """env.json's argv as a command: a script of the project's packages run as a module
    (`python -m bench.speedrun`), absolute paths inside the working directory made relative."""
    script = Path(argv[0])
    head = (f"python -m {script.parent.name}.{script.stem}" if script.suffix == ".py"
            and script.parent.name in ("bench", "vitlib") else f"python {argv[0]}")
    words = [display_path(w) if os.path.isabs(w) else w for w in argv[1:]]
    return " ".join([head, *(shlex.quote(w) for w in words)])
