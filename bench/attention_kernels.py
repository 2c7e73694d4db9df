"""Which attention kernel is fastest, by device, precision, token count and pass: the measurement
behind `attn_impl="auto"` (vitlib.models.vit.attention_kernel).

One vitlib `Attention` layer (qkv projection, kernel, output projection) on a random (B, T, D)
batch, timed with each kernel — "sdpa" (F.scaled_dot_product_attention) and "explicit" (matmul,
softmax, matmul) — in each precision (fp32; bf16 autocast where the hardware has it), for the
training pass (forward + backward) and the inference pass (forward under no_grad). The kernels run
in turn `--rounds` times and each reports its median round. Per row: both times, the speed-up of
explicit over sdpa, the fastest kernel, what "auto" picks there and whether that is the fastest
(or within `--tie` of it).

    python -m bench.attention_kernels --device cpu        # results/bench/attention_kernels_<cpu kind>.csv
    python -m bench.attention_kernels --tiny --out /tmp/a.csv
"""
import argparse
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python bench/attention_kernels.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import (
    check_positive,
    environment,
    ms_per_call,
    parse_list,
    print_table,
    progress,
    resolve_out,
    run_cli,
    write_csv,
)
from vitlib.device import cpu_has_native_bf16, cpu_kind, resolve_device
from vitlib.models.vit import Attention, attention_kernel

# (embed dim, heads, tokens): the CPU models' shapes (laptop ViT: D 128 at 16 px with and without a
# class token; D 192 at 32 px; D 384 at 32 px, 224 px / 16 and longer sequences)
SHAPES = [(128, 4, 16), (128, 4, 17), (192, 3, 65), (384, 6, 65), (384, 6, 197), (384, 6, 257),
          (384, 6, 401), (384, 6, 577), (384, 6, 785), (384, 6, 1025)]
TINY_SHAPES = [(32, 2, 5), (32, 2, 17)]
TOKENS_PER_BATCH = 8192  # batch = this / tokens (at least 8): about the same work per call
KERNELS = ("sdpa", "explicit")
PASSES = ("train", "infer")
COLUMNS = ("cpu_kind", "embed_dim", "heads", "tokens", "batch", "precision", "pass", "sdpa_ms", "explicit_ms",
           "explicit_speedup", "spread", "fastest", "auto", "auto_ok")


def time_kernel(layer, x, precision, train_pass, steps, device):
    """ms per call of one forward (+ backward for the training pass) of `layer` on x: (B, T, D)."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def call():
        if train_pass:
            with autocast:
                out, _ = layer(x)
            out.float().sum().backward()
        else:
            with torch.no_grad(), autocast:
                layer(x)

    call()  # warm-up
    return ms_per_call(call, steps, device)


def measure(dim, heads, tokens, precision, pass_, args, device):
    batch = 2 if args.tiny else max(8, TOKENS_PER_BATCH // tokens)
    torch.manual_seed(0)
    layers = {k: Attention(dim, heads, kernel=k).to(device) for k in KERNELS}
    layers["explicit"].load_state_dict(layers["sdpa"].state_dict())
    x = torch.randn(batch, tokens, dim, device=device, requires_grad=pass_ == "train")  # (B, T, D)
    times = {k: [] for k in KERNELS}
    for _ in range(args.rounds):  # in turn: a drifting clock hits both alike
        for k in KERNELS:
            times[k].append(time_kernel(layers[k], x, precision, pass_ == "train", args.steps, device))
    ms = {k: statistics.median(v) for k, v in times.items()}
    spread = max((max(v) - min(v)) / statistics.median(v) for v in times.values())
    fastest = min(ms, key=ms.get)
    auto = attention_kernel("auto", device.type, precision == "bf16", pass_ == "train", tokens)
    row = dict(cpu_kind=cpu_kind() if device.type == "cpu" else "cuda", embed_dim=dim, heads=heads,
               tokens=tokens, batch=batch, precision=precision, **{"pass": pass_},
               sdpa_ms=ms["sdpa"], explicit_ms=ms["explicit"], explicit_speedup=ms["sdpa"] / ms["explicit"],
               spread=spread, fastest=fastest, auto=auto,
               auto_ok="yes" if ms[auto] <= ms[fastest] * (1 + args.tie) else "no")
    progress(f"D {dim}, {heads} heads, {tokens} tokens, batch {batch}, {precision} {pass_}: sdpa {ms['sdpa']:.2f} ms, "
             f"explicit {ms['explicit']:.2f} ms; auto picks {auto} ({row['auto_ok']})")
    return row


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="fp32,bf16", help="comma list of fp32, bf16 (bf16 skipped where "
                                                            "the hardware would emulate it)")
    p.add_argument("--passes", default="train,infer", help=f"comma list of {', '.join(PASSES)}")
    p.add_argument("--steps", type=int, default=10, help="timed calls per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds, kernels in turn; the median is reported")
    p.add_argument("--tie", type=float, default=0.10, help="auto is right when within this fraction of the fastest")
    p.add_argument("--tiny", action="store_true", help="two small shapes, batch 2 (CPU tests)")
    p.add_argument("--out", default=None, help="CSV path (default results/bench/attention_kernels_<kind>.csv)")
    args = p.parse_args(argv)
    args.device = resolve_device(args.device)
    args.precision = parse_list(args.precision, ("fp32", "bf16"), "--precision")
    if args.device.type == "cpu" and not cpu_has_native_bf16():
        args.precision = [p for p in args.precision if p != "bf16"]
    args.passes = parse_list(args.passes, PASSES, "--passes")
    check_positive(steps=args.steps, rounds=args.rounds)
    return args


def main(argv=None):
    args = parse_args(argv)
    device = args.device
    kind = cpu_kind() if device.type == "cpu" else "cuda"
    out = resolve_out(args.out, f"attention_kernels_{kind}")
    env = environment(device)
    progress(f"attention kernels on {env['gpu']}, torch {env['torch']}; CSV {out}")
    rows = []
    for dim, heads, tokens in (TINY_SHAPES if args.tiny else SHAPES):
        for precision in args.precision:
            for pass_ in args.passes:
                rows.append(measure(dim, heads, tokens, precision, pass_, args, device))
                write_csv(rows, out, COLUMNS, env)
    print_table(rows, COLUMNS, title=f"\nAttention kernels on {env['gpu']} (torch {env['torch']}), written to {out}")
    return rows


if __name__ == "__main__":
    run_cli(main)
