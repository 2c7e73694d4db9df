"""Command line: `python -m vitlib train ...`, `python -m vitlib list-models`, `... list-recipes`.

    python -m vitlib train --model vit_s4 --dataset cifar10 --recipe vit_small_data --epochs 100 \\
        --out results/runs/vit_s4_cifar10 [--lr 5e-4 --batch-size 256 ...] [--model-arg depth=6] [--resume]

Every TrainConfig field is a flag (`--warmup-epochs 5`, `--no-compile`, `--betas 0.9 0.95`,
`--augment '{"hflip": true}'`); `--set key=value` sets any field too (values read as JSON, else
text; `augment.hflip=true` sets one augmentation field). Precedence: TrainConfig defaults < recipe
< --set < flags. Multi-GPU: `torchrun --nproc_per_node=N -m vitlib train ...`.
Bad input, a damaged run file and a full disk exit with status 2 and a one-line message, no traceback.
"""
import argparse
import dataclasses
import errno
import json
import sys

import torch

from vitlib.train.config import RECIPES, TrainConfig, get_recipe


def _parse_value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(items, what):
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} expects key=value, got {item!r}")
        out[key] = _parse_value(value)
    return out


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
    parser = argparse.ArgumentParser(prog="python -m vitlib", description="vitlib command line")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model and write a run folder")
    train.add_argument("--model", required=True, help="a name from `python -m vitlib list-models`")
    train.add_argument("--dataset", required=True, help="a vitlib.data data set name, e.g. cifar10, digits")
    train.add_argument("--out", required=True, help="run folder")
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
    sub.add_parser("list-models", help="print every model name")
    sub.add_parser("list-recipes", help="print every recipe and its settings")
    return parser


def resolve_config(args):
    """Defaults < recipe < --set < explicit flags."""
    base = get_recipe(args.recipe) if args.recipe else TrainConfig()
    changes = {}
    for key, value in _pairs(args.set, "--set").items():
        if key.startswith("augment."):
            changes.setdefault("augment", dict(base.augment))[key[len("augment."):]] = value
        else:
            changes[key] = value
    for f in dataclasses.fields(TrainConfig):
        if getattr(args, f.name) is not None:
            changes[f.name] = getattr(args, f.name)
    return base.replace(**changes)


def train(args):
    from vitlib import create_model, list_models
    from vitlib.data import get_dataset
    from vitlib.train import distributed, fit
    from vitlib.train.runfolder import image_shape

    # every argument is checked before the data are read
    config = resolve_config(args)
    model_args = _pairs(args.model_arg, "--model-arg")
    if args.model not in list_models():
        raise ValueError(f"unknown model {args.model!r}; allowed: {', '.join(list_models())}")
    if args.num_classes != "auto" and not (args.num_classes.isdigit() and int(args.num_classes) > 0):
        raise ValueError(f"--num-classes must be 'auto' or a positive integer, got {args.num_classes!r}")
    data_args = dict(data_dir=args.data_dir, img_size=args.img_size, train_size=args.train_size,
                     val_fraction=args.val_fraction, seed=config.seed, **_pairs(args.data_option, "--data-option"))
    train_data = get_dataset(args.dataset, "train", **data_args)
    eval_data = get_dataset(args.dataset, args.eval_split, **data_args)
    num_classes = train_data.num_classes if args.num_classes == "auto" else int(args.num_classes)
    in_chans, _, img_size = image_shape(train_data)
    torch.manual_seed(config.seed)  # the initial weights
    model = create_model(args.model, num_classes=num_classes, img_size=img_size, in_chans=in_chans, **model_args)
    run_info = {"dataset": {k: v for k, v in data_args.items() if k != "data_dir"} | {
        "name": args.dataset, "eval_split": args.eval_split}}
    try:
        fit(model, train_data, eval_data, config, args.out, resume=args.resume,
            progress=not args.no_progress, run_info=run_info)
    finally:
        distributed.cleanup()


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list-models":
            from vitlib import list_models
            print("\n".join(list_models()))
        elif args.command == "list-recipes":
            for name, recipe in RECIPES.items():
                print(f"{name}: {json.dumps(recipe.to_dict())}")
        else:
            train(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        where = f" writing {e.filename}" if e.filename else ""
        print(f"error: no space left on device{where}; free some space, then continue with --resume",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
