"""The `vitlib` command (also `python -m vitlib`): one entry point for everything the project does.

    vitlib train --model vit_s4 --dataset cifar10 --recipe vit_small_data --epochs 100 \\
        --out results/runs/vit_s4_cifar10 [--lr 5e-4 --batch-size 256 ...] [--model-arg depth=6] [--resume]
    vitlib run experiments/laptop.yaml [--only GLOB ...]   # a study (= python -m vitlib.experiments run)
    vitlib report [results]                                # REPORT.md + report.html (= python -m vitlib.report)
    vitlib eval RUN_FOLDER [--dataset cifar10]             # top-1 of a trained run on a test split
    vitlib predict IMAGE --run RUN_FOLDER                  # the classes a trained model gives one image
    vitlib attention IMAGE --run RUN_FOLDER --out map.png  # its attention rollout (Fig. 6) on that image
    vitlib model-card RUN_FOLDER [--force]                 # RUN_FOLDER/README.md: a Hugging Face model card
    vitlib make-data cifar10 cifar-10-python.tar.gz --out data/   # the studies' JPEG archives, from the originals
    vitlib list-models | list-recipes | --version

Every TrainConfig field is a flag (`--warmup-epochs 5`, `--no-compile`, `--betas 0.9 0.95`,
`--augment '{"flip": true}'`); `--set key=value` sets any field too (values read as YAML, as every
key=value of the project's command lines; `augment.flip=true` sets one augmentation field).
Precedence: TrainConfig defaults < recipe < $VITLIB_PRECISION < --set < flags. Multi-GPU:
`torchrun --nproc_per_node=N -m vitlib train ...`.
Bad input, a damaged run file and a full disk exit with status 2 and a one-line message, no traceback.
"""
import argparse
import contextlib
import dataclasses
import json
import os
import shlex
import sys
from pathlib import Path

import torch

from vitlib.device import PRECISION_ENV, precision_from_env
from vitlib.fileio import FileLocked, file_lock, run_lock, write_error_message
from vitlib.keyvalue import parse_overrides
from vitlib.train.config import RECIPES, TrainConfig, get_recipe


def _add_config_flags(parser):
    """One flag per TrainConfig field, typed from its default; None means "not given"."""
    group = parser.add_argument_group("training config (units: vitlib/train/config.py; each overrides the recipe)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kw = dict(dest=f.name, default=None, help=f"TrainConfig default: {default!r}")
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(default, tuple):
            group.add_argument(flag, type=float, nargs=len(default), **kw)
        elif isinstance(default, dict):
            group.add_argument(flag, type=json.loads, metavar="JSON", **kw)
        else:
            group.add_argument(flag, type=int if f.name == "steps" else type(default), **kw)


def build_parser():
    from vitlib import __version__
    parser = argparse.ArgumentParser(prog="vitlib", description="vitlib: the Vision Transformer, reproduced")
    parser.add_argument("--version", action="version", version=f"vitlib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model and write a run folder")
    train.add_argument("--model", required=True, help="a name from `vitlib list-models`")
    train.add_argument("--dataset", required=True, help="a vitlib.data data set name, e.g. cifar10, digits")
    train.add_argument("--out-dir", "--out", dest="out", required=True,
                       help="run folder (out_dir, as the notebooks call it)")
    train.add_argument("--recipe", default=None, help=f"one of {', '.join(RECIPES)} (default: TrainConfig defaults)")
    train.add_argument("--data-dir", default=None, help="where the data set lives (default: the data module's)")
    train.add_argument("--img-size", type=int, default=None, help="resize images to N x N (default: native)")
    train.add_argument("--train-size", type=int, default=None, help="use N training images (a seeded subset)")
    train.add_argument("--val-fraction", type=float, default=0.0, help="hold out this fraction of train as 'val' (0)")
    train.add_argument("--eval-split", default="test", choices=("test", "val"), help="split to evaluate on (test)")
    train.add_argument("--data-option", action="append", metavar="KEY=VALUE",
                       help="a data-set option of get_dataset, e.g. channels=3 (digits), in_memory=false (imagefolder)")
    train.add_argument("--num-classes", default="auto", help="'auto' = the data set's class count")
    train.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="model constructor override")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="any TrainConfig field")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch stays)")
    _add_config_flags(train)
    for name, help_text in (("run", "run a study file (vitlib run --help: its options)"),
                            ("report", "build REPORT.md and report.html from results/ (vitlib report --help)")):
        passed = sub.add_parser(name, help=help_text, add_help=False)
        passed.add_argument("args", nargs=argparse.REMAINDER)
    for name, help_text in (("eval", "top-1 accuracy of a trained run folder on a data set's test split"),
                            ("predict", "the top classes a trained run folder gives an image file"),
                            ("attention", "the attention rollout (Fig. 6) of a trained ViT on an image file")):
        cmd = sub.add_parser(name, help=help_text)
        if name != "eval":
            cmd.add_argument("image", help="an image file (PNG, JPEG, ...)")
        cmd.add_argument("run" if name == "eval" else "--run", help="a finished run folder (result.json and "
                         "weights.safetensors or checkpoint.pt), or a weights file with --model, --dataset, "
                         "--img-size", **({} if name == "eval" else {"required": True}))
        cmd.add_argument("--dataset", default=None, help="data set (default: the run's); its classes and "
                         "normalisation are used" + ("" if name == "eval" else " (default: those the run "
                                                 "recorded, so the data set need not be here)"))
        cmd.add_argument("--model", default=None, help="for a weights file: its model (`vitlib list-models`)")
        cmd.add_argument("--model-arg", action="append", metavar="KEY=VALUE",
                         help="for a weights file: a model constructor override")
        cmd.add_argument("--img-size", type=int, default=None, help="for a weights file: its input size in px")
        cmd.add_argument("--data-dir", default=None, help="where the data set lives (default: the data module's)")
        if name == "eval":
            cmd.add_argument("--split", default="test", choices=("test", "val"), help="split (test)")
            cmd.add_argument("--json", default=None, metavar="PATH",
                             help="where to write the JSON record (default: eval_<dataset>_<split>.json "
                                  "in the run folder; a weights file: none)")
            cmd.add_argument("--batch-size", type=int, default=256, help="images per forward pass (256)")
        elif name == "predict":
            cmd.add_argument("--top", type=int, default=5, help="classes shown (5)")
        else:
            cmd.add_argument("--out", required=True, help="PNG to write (the image and its rollout map)")
    card = sub.add_parser("model-card", help="write a Hugging Face model card (README.md) for a run folder's "
                                             "weights.safetensors, from the run's own records")
    card.add_argument("run", help="a finished run folder with weights.safetensors (config.json, summary.json, "
                                  "env.json; result.json where the run has one)")
    card.add_argument("--force", action="store_true", help="replace a README.md that differs from the card")
    make = sub.add_parser("make-data", help="build the studies' JPEG archives from the official downloads "
                                            "(vitlib/data/archives.py)")
    make.add_argument("kind", choices=("cifar10", "tiny-imagenet-32"), help="which archive")
    make.add_argument("source", help="the official download: cifar-10-python.tar.gz or tiny-imagenet-200.zip "
                                     "(or the folder it extracts to)")
    make.add_argument("--out", default=".", help="folder for <kind>-jpeg.tar.gz (default: here)")
    sub.add_parser("list-models", help="every model: parameters and forward GFLOPs at its default size")
    sub.add_parser("list-recipes", help="every training recipe and its main settings")
    return parser


def resolve_config(args):
    """Defaults < recipe < $VITLIB_PRECISION < --set < explicit flags."""
    base = get_recipe(args.recipe) if args.recipe else TrainConfig()
    if (env := precision_from_env()) is not None:  # the one place `vitlib train` reads it
        base = base.replace(precision=env)
        print(f"note: precision {env} from ${PRECISION_ENV} (--set precision=... or --precision wins)",
              file=sys.stderr)
    settings = parse_overrides(args.set, "--set")
    config = base.with_settings(settings)  # a bad --set value is refused even where a flag sets the same field
    flags = {}
    for f in dataclasses.fields(TrainConfig):
        if getattr(args, f.name) is not None:
            if f.name in settings and settings[f.name] != getattr(args, f.name):
                print(f"note: --{f.name.replace('_', '-')} {getattr(args, f.name)} wins over --set "
                      f"{f.name}={settings[f.name]} (flags beat --set)", file=sys.stderr)
            flags[f.name] = getattr(args, f.name)
    return config.replace(**flags)


def train(args):
    from vitlib import create_model, list_models
    from vitlib.data import get_dataset
    from vitlib.train import distributed, fit
    from vitlib.train.runfolder import image_shape

    # every argument is checked before the data are read
    config = resolve_config(args)
    model_args = parse_overrides(args.model_arg, "--model-arg")
    if args.model not in list_models():
        raise ValueError(f"unknown model {args.model!r}; allowed: {', '.join(list_models())}")
    if args.num_classes != "auto" and not (args.num_classes.isdigit() and int(args.num_classes) > 0):
        raise ValueError(f"--num-classes must be 'auto' or a positive integer, got {args.num_classes!r}")
    data_args = dict(data_dir=args.data_dir, img_size=args.img_size, train_size=args.train_size,
                     val_fraction=args.val_fraction, seed=config.seed,
                     **parse_overrides(args.data_option, "--data-option"))
    train_data = get_dataset(args.dataset, "train", **data_args)
    eval_data = get_dataset(args.dataset, args.eval_split, **data_args)
    # a held-out validation split chooses the run's selected evaluation (and stops it, with patience)
    val_data = (get_dataset(args.dataset, "val", **data_args) if args.val_fraction and args.eval_split == "test"
                else None)
    num_classes = train_data.num_classes if args.num_classes == "auto" else int(args.num_classes)
    if num_classes < train_data.num_classes:  # before the run folder exists: the corrected command must work
        raise ValueError(f"--num-classes {num_classes} but {args.dataset} has {train_data.num_classes} classes "
                         f"(labels 0-{train_data.num_classes - 1}); pass --num-classes auto or at least "
                         f"{train_data.num_classes}")
    in_chans, _, img_size = image_shape(train_data)
    torch.manual_seed(config.seed)  # the initial weights
    model = create_model(args.model, num_classes=num_classes, img_size=img_size, in_chans=in_chans, **model_args)
    run_info = {"dataset": {k: v for k, v in data_args.items() if k != "data_dir"} | {
        "name": args.dataset, "eval_split": args.eval_split}}
    main_rank = int(os.environ.get("RANK", "0")) == 0
    try:
        try:  # the lock the study runner takes: two trainings never write into one folder at once
            with file_lock(run_lock(Path(args.out).absolute()), wait=False) if main_rank else contextlib.nullcontext():
                summary = fit(model, train_data, eval_data, config, args.out, val_data=val_data, resume=args.resume,
                              progress=False if args.no_progress else None, run_info=run_info)
        except FileLocked as err:
            raise ValueError(f"run folder {args.out} is in use by {err.holder}: wait for it to end, or choose "
                             "another --out") from None
        if main_rank:  # result.json: the run reaches the report like a notebook's
            write_train_result(args, model, model_args, summary, train_data, config)
            print(train_ending(args.out, summary))
    finally:
        distributed.cleanup()


def train_ending(out, summary):
    """What a finished `vitlib train` says last: what it wrote, its accuracy, what to do next."""
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    final, selected = summary["final"], summary.get("selected")
    files = ", ".join(sorted(p.name for p in Path(out).iterdir() if p.is_file()))
    lines = [f"wrote {out}/: {files}",
             f"test top-1 {pct(final['eval_acc'])} (flip-TTA {pct(final['eval_acc_tta'])}) "
             f"after {summary['steps']} steps, "
             f"{summary['train_seconds']:.0f} s of training at {summary['images_per_s']:.0f} images/s"]
    if selected:
        lines.append(f"selected on validation: step {selected['step']}, val {pct(selected['val_acc'])}, "
                     f"test {pct(selected['eval_acc'])}"
                     + (f" (stopped early at step {summary['stopped_early']['step']})"
                        if summary.get("stopped_early") else ""))
    lines.append(f"next: vitlib eval {out}  |  vitlib predict IMAGE --run {out}  |  "
                 f"vitlib attention IMAGE --run {out} --out map.png")
    return "\n".join(lines)


def write_train_result(args, model, model_args, summary, train_data, config):
    """result.json for a `vitlib train` run, the record 01_pretrain writes (kind "train")."""
    from vitlib.experiments.results import accuracy_record, training_record, write_result

    command = " ".join(shlex.quote(word) for word in ["vitlib", *args.argv])
    parameters = {k: v for k, v in vars(args).items() if k not in ("command", "argv")}
    write_result(args.out, "vitlib train", parameters, kind="train", run=Path(args.out).name, model=args.model,
                 model_args=model_args, command=command,
                 **training_record(model, summary, train_data, config, dataset=args.dataset,
                                   recipe=args.recipe or "TrainConfig defaults"), **accuracy_record(summary))


def _trained(args, split="test", images=True):
    """(model in eval mode, its record, the data set it is judged on) of args.run: a finished run
    folder (its result.json, else its config.json, names model, data and size), or a weights file
    (.safetensors, .pth, .npz, ...) with --model, --dataset and --img-size saying what it is.
    images=False (a prediction on one image): a run that recorded its classes and normalisation
    needs no data set, unless --dataset or --data-dir names one."""
    from vitlib import create_model, load_pretrained
    from vitlib.data import get_dataset
    from vitlib.experiments.trained import load_run_model, recorded_run_data
    from vitlib.models.weights import read_state_dict
    from vitlib.train.runfolder import image_shape

    run = Path(args.run)
    if run.is_file():
        missing = [flag for flag, value in (("--model", args.model), ("--dataset", args.dataset),
                                            ("--img-size", args.img_size)) if value is None]
        if missing:
            raise ValueError(f"{run} is a weights file: say what it holds with {', '.join(missing)}")
        data = get_dataset(args.dataset, split, args.data_dir, img_size=args.img_size)
        head = read_state_dict(run).get("head.weight")
        if head is not None and head.shape[0] != data.num_classes:
            raise ValueError(f"{run} predicts {head.shape[0]} classes, {data.name} has {data.num_classes}")
        model = create_model(args.model, num_classes=data.num_classes, img_size=args.img_size,
                             in_chans=image_shape(data)[0], **parse_overrides(args.model_arg, "--model-arg"))
        record = {"model": args.model, "dataset": args.dataset, "img_size": args.img_size}
        return load_pretrained(model, run).eval(), record, data
    model, record = load_run_model(run)
    data = None if images or args.dataset or args.data_dir else recorded_run_data(run, record)
    if data is None:
        data = get_dataset(args.dataset or record["dataset"], split, args.data_dir, img_size=record["img_size"])
    if data.num_classes != record["num_classes"]:
        raise ValueError(f"{run} predicts {record['num_classes']} classes, {data.name} has {data.num_classes}")
    return model, record, data


def evaluate_run(args):
    """Top-1 of a trained run (or weights file) on a split: a line for people, a JSON record for
    scripts (eval_<dataset>_<split>.json in the run folder, or --json PATH)."""
    import time

    from vitlib.data import BatchStream
    from vitlib.train.distributed import setup
    from vitlib.train.runfolder import image_shape, write_json
    from vitlib.train.step import evaluate

    model, record, data = _trained(args, args.split)
    dist = setup("cpu")
    stream = BatchStream(data, args.batch_size, device="cpu", shuffle=False, drop_last=False)
    print(f"evaluating {record['model']} on {len(data):,} {data.name} {args.split} images "
          f"({len(stream)} batches of {args.batch_size}, plain and mirrored)...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    top1, tta = evaluate(model, stream, contextlib.nullcontext(), True, dist)
    seconds = time.perf_counter() - start
    print(f"{record['model']} ({args.run}) on {len(data):,} {data.name} {args.split} images: "
          f"top-1 {100 * top1:.2f}% (flip-TTA {100 * tta:.2f}%), {seconds:.0f} s")
    result = {"run": str(args.run), "model": record["model"], "dataset": data.name, "split": args.split,
              "images": len(data), "img_size": image_shape(data)[2], "top1": round(100 * top1, 2),
              "top1_tta": round(100 * tta, 2), "seconds": round(seconds, 1),
              "command": " ".join(shlex.quote(word) for word in ["vitlib", *args.argv])}
    out = args.json or (Path(args.run, f"eval_{data.name}_{args.split}.json") if Path(args.run).is_dir() else None)
    if out is not None:
        write_json(out, result)
        print(f"wrote {out}")


def predict(args):
    from vitlib.data import image_batch

    if args.top < 1:
        raise ValueError(f"--top must be a positive integer (how many classes to show), got {args.top}")
    model, record, data = _trained(args, images=False)
    with torch.no_grad():
        probs = model(image_batch(args.image, data)).softmax(dim=-1)[0]
    top = probs.topk(min(args.top, len(probs)))
    for p, k in zip(top.values.tolist(), top.indices.tolist()):  # the class id too where the name does not say it
        name, label = data.class_names[k], data.classes[k]
        print(f"{100 * p:6.2f}%  {name}" + (f"  ({label})" if label not in name else ""))


def attention(args):
    from vitlib.analysis import plot_rollout, rollout_maps
    from vitlib.data import image_batch

    model, record, data = _trained(args, images=False)
    if not hasattr(model, "blocks"):
        raise ValueError(f"{args.run} holds a {record['model']}, not a ViT: it has no attention to roll out")
    x = image_batch(args.image, data)
    with torch.no_grad():
        maps = rollout_maps(model, x)
        label = data.class_names[int(model(x).argmax())]
    fig = plot_rollout(x, maps, data.mean, data.std)
    fig.suptitle(f"{record['model']} ({Path(args.run).name}): predicted {label}")
    fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"wrote {args.out} (predicted {label})")


def model_card(args):
    from vitlib.report.modelcard import write_model_card

    path, written = write_model_card(args.run, force=args.force)
    print(f"wrote {path}" if written else f"{path} is up to date (the card its records give)")


def list_models():
    from vitlib import count_flops, count_params, create_model
    from vitlib import list_models as names
    from vitlib.flops import shapes_only

    print(f"{'model':<16} {'params':>12} {'GFLOPs':>8}  at")
    for name in names():
        with shapes_only():  # no weights: ViT-H has 632M parameters
            model = create_model(name)
        # a ViT's own image size; a convolutional network's data set's (CIFAR: 32 px, else 224)
        size = getattr(getattr(model, "patch_embed", None), "img_size", None) or (32 if "cifar" in name else 224)
        try:  # on the meta device every operation runs in Python: each stack of alike blocks is cut
            flops = f"{count_flops(model, size, cut_repeats=True) / 1e9:8.2f}"
        except (ValueError, RuntimeError, NotImplementedError):
            flops = f"{'-':>8}"
        print(f"{name:<16} {count_params(model):>12,} {flops}  {size} px")


def make_data(args):
    from vitlib.data.archives import make_archive
    path, sha256 = make_archive(args.kind, args.source, args.out)
    print(f"wrote {path} (sha256 {sha256}); use it with VITLIB_DATA={path.parent}")


def list_recipes():
    keys = ("optimizer", "lr", "batch_size", "epochs", "steps", "schedule", "weight_decay", "label_smoothing")
    print(f"{'recipe':<20} " + " ".join(f"{k:>15}" for k in keys))
    for name, recipe in RECIPES.items():
        print(f"{name:<20} " + " ".join(f"{'-' if getattr(recipe, k) is None else str(getattr(recipe, k)):>15}"
                                        for k in keys))
    print("\nEvery field: vitlib/train/config.py; one recipe in full: python -c \"from vitlib.train import "
          "get_recipe; print(get_recipe('vit_cpu'))\"")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["run"]:  # handed on whole (argparse's REMAINDER refuses a leading "--help")
        from vitlib.experiments.__main__ import main as run_main
        return run_main(argv)
    if argv[:1] == ["report"]:
        from vitlib.report.__main__ import main as report_main
        return report_main(argv[1:])
    args = build_parser().parse_args(argv)
    args.argv = argv  # what a run records as the command that re-makes it
    commands = {"list-models": lambda _: list_models(), "list-recipes": lambda _: list_recipes(),
                "make-data": make_data, "eval": evaluate_run, "predict": predict, "attention": attention,
                "model-card": model_card, "train": train}
    try:
        commands[args.command](args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        resume = " with --resume" if args.command == "train" else ""
        print(f"interrupted; continue{resume}" if resume else "interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        message = write_error_message(e, "continue with --resume" if args.command == "train" else "try again")
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
