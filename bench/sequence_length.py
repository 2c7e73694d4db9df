"""Why images are cut into patches (§3.1): self-attention costs grow with the square of the token
count, so a 32 x 32 image read pixel by pixel (1024 tokens) costs far more than in 4 x 4 patches
(64 tokens). This times one training step (fit's train_step: forward, backward, plain SGD) of a
ViT of fixed width (ViT-S: D = 384, 6 heads, MLP 1536) as the token count grows, with fused
attention (F.scaled_dot_product_attention: flash / memory-efficient kernels) and explicit
attention (softmax(q k^T / sqrt(d)) v, which stores the (B, heads, T, T) matrix), and fits time =
a N^2 + b N + c per attention implementation.

    python -m bench.sequence_length                          # depth 12, batch 64 (a GPU)
    python -m bench.sequence_length --tiny --depth 1 --device cpu --out /tmp/s.csv --figure /tmp/s.png

Cases: 32 px with patches of 1, 2, 4, 8 (N = 1024, 256, 64, 16 patch tokens) and 224 px with 8, 16,
32 (784, 196, 49); one class token is added to each. Peak memory is CUDA's max_memory_allocated
("n/a" on the CPU); a case that runs out of memory is recorded as "OOM".
Writes results/bench/sequence_length.csv and results/figures/sequence_length.png.
"""
import argparse
import math
import sys
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/sequence_length.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from bench.common import (
    check_positive,
    environment,
    free_memory,
    is_out_of_memory,
    ms_per_call,
    parse_list,
    peak_memory_gib,
    print_table,
    progress,
    reset_peak_memory,
    resolve_out,
    run_cli,
    wall_seconds,
    write_csv,
)
from vitlib import count_flops
from vitlib.device import autocast_context, resolve_device, resolve_precision
from vitlib.models.vit import ATTN_IMPLS, VisionTransformer
from vitlib.train import TrainConfig
from vitlib.train.step import make_optimizer, train_step

CASES = ((32, 1), (32, 2), (32, 4), (32, 8), (224, 8), (224, 16), (224, 32))  # (img_size, patch_size)
TINY_CASES = ((16, 1), (16, 2), (16, 4), (16, 8))  # 256, 64, 16, 4 tokens
SHAPE = dict(embed_dim=384, num_heads=6, mlp_dim=1536)  # ViT-S width (Table 1 / official configs)
TINY_SHAPE = dict(embed_dim=64, num_heads=2, mlp_dim=128)
COLUMNS = ("attn_impl", "img_size", "patch_size", "tokens", "batch", "depth", "fwd_gflops", "time_ms",
           "peak_mem_gib", "status")
# fit's training step with plain SGD: the optimiser adds a cost linear in the parameters, none per token
STEP_CONFIG = TrainConfig(optimizer="sgd", lr=1e-3, momentum=0.0, weight_decay=0.0)
FIT_COLUMNS = ("attn_impl", "points", "a_ms_per_token2", "b_ms_per_token", "c_ms", "r2")


def measure(attn_impl, img_size, patch_size, shape, args):
    """One row: ms per training step (fit's train_step: forward, backward, an SGD step) and peak
    memory, or OOM."""
    device = args.device
    tokens = (img_size // patch_size) ** 2
    row = dict(attn_impl=attn_impl, img_size=img_size, patch_size=patch_size, tokens=tokens,
               batch=args.batch, depth=args.depth)
    label = f"{attn_impl} {img_size} px / {patch_size} px patches ({tokens} tokens)"
    autocast = autocast_context(device)
    free_memory(device)
    reset_peak_memory(device)
    try:
        progress(f"{label}: building")
        model = VisionTransformer(img_size=img_size, patch_size=patch_size, depth=args.depth, num_classes=10,
                                  attn_impl=attn_impl, **shape).to(device).train()
        row["fwd_gflops"] = count_flops(model, img_size) / 1e9
        x = torch.randn(args.batch, 3, img_size, img_size, device=device)  # (B, C, H, W)
        y = torch.randint(10, (args.batch,), device=device)  # (B,)

        optimizer = make_optimizer(model, STEP_CONFIG, device)
        step = lambda: train_step(model, optimizer, [(x, y)], STEP_CONFIG, autocast=autocast)  # noqa: E731

        progress(f"{label}: warm-up, {args.warmup} steps")
        wall_seconds(step, args.warmup, device)
        progress(f"{label}: timing {args.steps} steps")
        row.update(time_ms=ms_per_call(step, args.steps, device), peak_mem_gib=peak_memory_gib(device), status="ok")
        progress(f"{label}: {row['time_ms']:.2f} ms")
    except Exception as error:  # one failed case must not lose the others
        oom = is_out_of_memory(error)
        if not oom:
            traceback.print_exc()
        row.update(time_ms="OOM" if oom else "", peak_mem_gib="OOM" if oom else "",
                   status="OOM" if oom else f"error: {type(error).__name__}: {str(error)[:120]}")
        progress(f"{label}: {row['status']}")
    return row


def quadratic_fit(rows):
    """time_ms = a N^2 + b N + c over the rows that ran (numpy polyfit, degree 2) and its R^2;
    NaNs when fewer than three token counts ran."""
    points = sorted((r["tokens"], r["time_ms"]) for r in rows if r["status"] == "ok")
    if len({n for n, _ in points}) < 3:
        return dict(points=len(points), a_ms_per_token2=math.nan, b_ms_per_token=math.nan, c_ms=math.nan, r2=math.nan)
    n, t = np.array(points, dtype=float).T
    a, b, c = np.polyfit(n, t, 2)
    residual = t - np.polyval([a, b, c], n)
    total = ((t - t.mean()) ** 2).sum()
    r2 = 1.0 - (residual ** 2).sum() / total if total > 0 else math.nan
    return dict(points=len(points), a_ms_per_token2=float(a), b_ms_per_token=float(b), c_ms=float(c), r2=float(r2))


def plot(rows, fits, path, title):
    """Time and peak memory against tokens, log-log, one line per attention implementation, the
    quadratic fit dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    has_memory = False
    for i, fit in enumerate(fits):
        color = f"C{i}"
        ok = sorted((r["tokens"], r["time_ms"], r["peak_mem_gib"]) for r in rows
                    if r["attn_impl"] == fit["attn_impl"] and r["status"] == "ok")
        if not ok:
            continue
        n, t, mem = zip(*ok)
        ax_time.plot(n, t, "o-", color=color, label=fit["attn_impl"])
        if not math.isnan(fit["a_ms_per_token2"]):
            grid = np.geomspace(min(n), max(n), 200)
            curve = np.polyval([fit["a_ms_per_token2"], fit["b_ms_per_token"], fit["c_ms"]], grid)
            keep = curve > 0  # a log axis cannot show the fit where it dips below zero
            ax_time.plot(grid[keep], curve[keep], "--", color=color,
                         label=f"{fit['attn_impl']} quadratic fit (R² = {fit['r2']:.3f})")
        if all(isinstance(m, float) for m in mem):
            has_memory = True
            ax_mem.plot(n, mem, "o-", color=color, label=fit["attn_impl"])
        oom = [r["tokens"] for r in rows if r["attn_impl"] == fit["attn_impl"] and r["status"] == "OOM"]
        for n_oom in oom:
            ax_time.axvline(n_oom, color=color, linestyle=":", alpha=0.6)
    ax_time.set(xscale="log", yscale="log", xlabel="patch tokens N per image",
                ylabel="forward + backward time per batch (ms)", title="time")
    ax_mem.set(xlabel="patch tokens N per image", ylabel="peak allocated memory (GiB)", title="memory")
    if has_memory:
        ax_mem.set(xscale="log", yscale="log")
        ax_mem.legend()
    else:
        ax_mem.text(0.5, 0.5, "peak memory is measured on CUDA only", ha="center", va="center",
                    transform=ax_mem.transAxes)
        ax_mem.set(xticks=[], yticks=[])
    ax_time.legend(fontsize=8)
    for ax in (ax_time, ax_mem):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impls", default="sdpa,explicit", help=f"comma list of {', '.join(ATTN_IMPLS)}")
    p.add_argument("--depth", type=int, default=12, help="Transformer blocks")
    p.add_argument("--batch", type=int, default=None, help="images per step (default 64; 2 with --tiny)")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--tiny", action="store_true", help="64-wide model on 16 px images (CPU tests)")
    p.add_argument("--out", default=None, help="CSV path (default results/bench/sequence_length.csv)")
    p.add_argument("--figure", default=None, help="PNG path (default results/figures/sequence_length.png)")
    args = p.parse_args(argv)
    args.impls = parse_list(args.impls, ATTN_IMPLS, "--impls")
    args.batch = args.batch if args.batch is not None else (2 if args.tiny else 64)
    check_positive(depth=args.depth, batch=args.batch, steps=args.steps, warmup=args.warmup)
    args.device = resolve_device(args.device)
    return args


def main(argv=None):
    args = parse_args(argv)
    out = resolve_out(args.out, "sequence_length")
    figure = resolve_out(args.figure, "sequence_length", ".png", folder="figures")
    env = environment(args.device)
    progress(f"sequence length on {env['gpu']}, torch {env['torch']}, commit {env['commit']}; "
             f"precision {resolve_precision(args.device)}; CSV {out}")
    cases, shape = (TINY_CASES, TINY_SHAPE) if args.tiny else (CASES, SHAPE)
    cases = sorted(cases, key=lambda c: (c[0] // c[1]) ** 2)  # fewest tokens first: OOMs come last
    rows = []
    for attn_impl in args.impls:
        for img_size, patch_size in cases:
            rows.append(measure(attn_impl, img_size, patch_size, shape, args))
            write_csv(rows, out, COLUMNS, env)  # after every row: a run killed later keeps these
    free_memory(args.device)
    fits = [dict(attn_impl=impl, **quadratic_fit([r for r in rows if r["attn_impl"] == impl])) for impl in args.impls]
    for row in rows:  # the fit travels with each row of its implementation
        row.update({f"fit_{k}": v for k, v in next(f for f in fits if f["attn_impl"] == row["attn_impl"]).items()
                    if k not in ("attn_impl", "points")})
    fit_columns = tuple(f"fit_{k}" for k in FIT_COLUMNS[2:])
    write_csv(rows, out, COLUMNS + fit_columns, env)
    title = (f"ViT width {shape['embed_dim']}, depth {args.depth}, batch {args.batch}, "
             f"{resolve_precision(args.device)} on {env['gpu']} (torch {env['torch']}, commit {env['commit']})")
    try:
        plot(rows, fits, figure, title)
    except ImportError as error:  # the numbers matter more than the picture
        progress(f"no figure: {error}")
    print_table(rows, COLUMNS, title=f"\nForward + backward per batch, written to {out} and {figure}")
    print_table(fits, FIT_COLUMNS, title="\nQuadratic fit time_ms = a N^2 + b N + c (N = patch tokens)")
    return rows, fits


if __name__ == "__main__":
    run_cli(main)
