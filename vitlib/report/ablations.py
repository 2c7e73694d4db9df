"""Claims about the architecture and what a trained ViT learned: position embeddings, class token
vs GAP, patch size and depth (App. D), attention distance and position-embedding similarity (Fig. 7).

Same contract as scaling.py: `claim_*(runs) -> (row, table)`, the docstring is the verdict rule.
An ablation compares runs that differ only in the ablated knob: same data set, train_size,
recipe, steps and other model overrides (verdict.config_key).
"""
from __future__ import annotations

import math

import pandas as pd

from vitlib.analysis.attention import uniform_attention_distance
from vitlib.models.posemb import POS_EMBS as MODEL_POS_EMBS

from .collect import fmt_cell, fmt_mean_std, summarise, usable
from .verdict import (
    bar_text,
    best_per,
    config_key,
    join_columns,
    largest_group,
    make_row,
    noise,
    not_run,
    seed_spread,
    spearman,
    weigh,
)

# the model's position-embedding kinds, "none" first: the baseline every kind is weighed against
POS_EMBS = ("none", *(kind for kind in MODEL_POS_EMBS if kind != "none"))


def _vit_train(runs: pd.DataFrame) -> pd.DataFrame:
    df = usable(runs, "train")
    return df[(df["family"] == "vit") & df["accuracy"].notna()]


def pos_emb_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(all ViT train runs with a pos_emb, the compared configuration's runs: the one with the
    most pos_emb types, "none" among them; empty if none qualifies)."""
    df = _vit_train(runs)
    df = df[df["pos_emb"].isin(POS_EMBS)]
    return df, largest_group(df, config_key(df, ("pos_emb",)), "pos_emb", needed=("none",))


def pooling_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(all ViT train runs with a pool, the compared configuration's runs: token and gap)."""
    df = _vit_train(runs)
    df = df[df["pool"].isin(("token", "gap"))]
    return df, largest_group(df, config_key(df, ("pool",), with_lr=False), "pool",
                             needed=("token", "gap"))


SHAPE_ARGS = ("patch_size", "depth", "embed_dim", "num_heads", "mlp_dim")


def patch_depth_runs(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(all ViT train runs with a known shape, the compared configuration's runs: the one with
    the most distinct (patch, depth, width), the model name and shape overrides ignored)."""
    df = _vit_train(runs).dropna(subset=["patch", "depth", "width"])
    df = df.astype({"patch": int, "depth": int, "width": int})
    df = df.assign(shape=join_columns(df, ["patch", "depth", "width"], "/"))
    return df, largest_group(df, config_key(df, SHAPE_ARGS, with_model=False), "shape")


def base_shape(group: pd.DataFrame) -> tuple[int, int, int]:
    """The most common patch, depth and width of the compared runs (each knob's mode, the
    smallest on a tie): in a one-knob-at-a-time ablation, the shape every other run varies."""
    return tuple(int(group[knob].mode().iloc[0]) for knob in ("patch", "depth", "width"))


def claim_pos_emb(runs: pd.DataFrame):
    """Position information matters, its kind hardly does (Table 8).

    Data: kind=train ViT runs by model_args.pos_emb (default "learned"); the configuration with
    the most pos_emb types that includes "none". best / margin = the best / worst type's top1 -
    none's top1; spread = best type - worst type (types other than none); bar = seed_spread of all
    the cells (2 x the largest seed std; unknown with one seed). reproduced: margin > bar (every
    type beats none beyond the noise), spread < margin and >= 2 types besides none. partly: best >
    bar (position information helps) but some type does not beat none beyond the bar, or the kind
    matters as much (spread >= margin), or only one other type was run. within noise: no type beats
    none beyond the bar, none beats none of them either. not reproduced: no type beats none beyond
    the bar and none beats some type by more than it.
    """
    meta = ("pos-emb", "Position embeddings matter, their kind hardly does",
            "Table 8 (ViT-B/16, ImageNet 5-shot, top-1 %): none 61.38; 1-D learned 64.21; 2-D learned "
            "64.00; relative 64.03", "pos_emb")
    df, group = pos_emb_runs(runs)
    # the table holds the compared runs (all of them while no comparison exists: what there is)
    table = summarise(df if group.empty else group, ["dataset", "train_size", "label", "pos_emb"])
    if group.empty:
        return not_run(*meta, df, "train runs of one ViT configuration with pos_emb none and "
                       "at least one other type"), table
    cells = summarise(group, ["pos_emb"]).set_index("pos_emb")
    others = cells.drop(index="none")
    gains = others["mean"] - cells.at["none", "mean"]  # each kind over none
    margin, best = gains.min(), gains.max()
    spread = best - margin
    bar = seed_spread(cells)
    behind = [kind for kind, gain in gains.items() if weigh(gain, bar) != "higher"]
    if weigh(best, bar) != "higher":
        verdict, what = (("not reproduced", "no kind beat no position embedding, which beat some kind")
                         if weigh(margin, bar) == "lower" else
                         ("within noise", "no kind differs from no position embedding beyond the seed spread"))
    elif behind:
        verdict, what = "partly", (f"{', '.join(behind)} did not beat no position embedding beyond the "
                                   "seed spread, the other kinds did")
    elif len(others) < 2 or spread >= margin:
        verdict, what = "partly", ("every kind beat no position embedding, but "
                                   + ("only one kind was run" if len(others) < 2 else "the kinds differ as much"))
    else:
        verdict, what = "reproduced", "every kind beat no position embedding, and the kinds differ less than that"
    ours = "; ".join(f"{p} {fmt_cell(cells.loc[p])}" for p in cells.index)
    reason = (f"{what}: kinds − none {margin:+.2f} to {best:+.2f} pts, spread among {len(others)} kinds "
              f"{spread:.2f} pts ({bar_text(bar)}; {group['model'].iloc[0]}, {group['dataset'].iloc[0]})")
    return make_row(*meta, group, ours=ours, verdict=verdict, reason=reason), table


def claim_pooling(runs: pd.DataFrame):
    """Class token and global average pooling work equally well, each at its own lr (App. D.3).

    Data: kind=train ViT runs by model_args.pool (default "token") and lr, in the configuration
    with both. Each pooling's best lr = the lr with the highest mean top1; diff = gap - token at
    their best lr; tolerance = max(1 point, 2 x the larger seed std at those lrs).
    reproduced: |diff| <= tolerance, each pooling tried at >= 2 lr and its best lr at >= 2 seeds.
    partly: |diff| <= tolerance with a single lr or a single seed for one of them.
    not reproduced: |diff| > tolerance. (Here the claim is an equality, so a difference within
    the noise is what reproduces it.)
    """
    meta = ("pooling", "Class token and global average pooling work equally well",
            "App. D.3 / Fig. 9: class token and global average pooling work equally well, each "
            "with its own learning rate", "pooling")
    df, group = pooling_runs(runs)
    table = summarise(df if group.empty else group, ["dataset", "train_size", "label", "pool", "lr"])
    if group.empty:
        return not_run(*meta, df, "train runs of one ViT configuration with pool token and gap"), table
    cells = summarise(group, ["pool", "lr"])
    best = best_per(cells, ["pool"]).set_index("pool")
    diff = best.at["gap", "mean"] - best.at["token", "mean"]
    tolerance = max(1.0, 2 * noise(*best["std"]))
    several_lr = cells.groupby("pool")["lr"].nunique().min() >= 2
    seeds = best["n"].min() >= 2
    equal = abs(diff) <= tolerance
    verdict = ("reproduced" if equal and several_lr and seeds else "partly" if equal else "not reproduced")
    ours = "; ".join(f"{p} (best lr {best.at[p, 'lr']:g}) {fmt_cell(best.loc[p])}"
                     for p in ("token", "gap"))
    what = ("the two poolings are equally good" if equal else
            f"{'GAP' if diff > 0 else 'the class token'} is better beyond the tolerance")
    reason = (f"{what}: gap − token {diff:+.2f} pts, tolerance {tolerance:.2f}"
              + ("" if several_lr else "; one pooling was tried at a single lr")
              + ("" if seeds else "; one seed at a best lr"))
    return make_row(*meta, group, ours=ours, verdict=verdict, reason=reason), table


def _series(group: pd.DataFrame, knob: str, fixed: dict) -> pd.DataFrame:
    """Seed means by `knob` over the runs whose other shape knobs equal `fixed`."""
    rows = group
    for col, value in fixed.items():
        rows = rows[rows[col] == value]
    stats = summarise(rows, [knob])
    flops = rows.astype({"train_flops": float}).groupby(knob)["train_flops"].mean()
    return stats.assign(train_flops=stats[knob].map(flops).to_numpy())


def _gain_per_doubling(series: pd.DataFrame, knob: str) -> float:
    """top1 gain from the smallest to the largest `knob` per doubling of training FLOPs (of the
    knob itself when FLOPs are missing): the fair way to compare depth against width."""
    first, last = series.iloc[0], series.iloc[-1]
    cost = last["train_flops"] / first["train_flops"]
    if not cost or math.isnan(cost) or cost <= 1:
        cost = last[knob] / first[knob]
    return (last["mean"] - first["mean"]) / math.log2(cost)


def claim_patch_depth(runs: pd.DataFrame):
    """Smaller patches help; depth helps more than width (App. D.2, Fig. 8).

    Data: kind=train ViT runs; patch, depth, width from model_args or the registry shapes; the
    configuration (ignoring those three) with the most distinct shapes; base shape = its most
    common patch, depth and width (base_shape). Patch part: at base depth and width, top1 at the
    smallest patch > at the largest. Depth part: at base patch and
    width, the gain per doubling of training FLOPs from the shallowest to the deepest model is
    larger than the same for width (at base patch and depth) when width runs exist, else > 0.
    A part holds when its difference (top1 of the smallest minus the largest patch; depth gain
    minus width gain, in points) clears the bar: seed_spread of the end cells compared (2 x the
    largest seed std; unknown with one seed). reproduced: both parts hold. partly: one holds.
    within noise: neither holds nor is contradicted beyond the bar. not reproduced: a part is
    contradicted beyond the bar and none holds. Needs >= 2 patch sizes or >= 2 depths.
    """
    meta = ("patch-depth", "Smaller patches help; depth helps more than width",
            "App. D.2 / Fig. 8: depth helps most, smaller patches help, width helps least",
            "patch_depth")
    df, group = patch_depth_runs(runs)
    table = summarise(df if group.empty else group, ["dataset", "train_size", "patch", "depth", "width"])
    if group.empty:
        return not_run(*meta, df, "train runs of ViTs differing in patch size or depth"), table
    patch, depth, width = base_shape(group)
    parts, outcomes = [], []
    by_patch = _series(group, "patch", {"depth": depth, "width": width})
    if len(by_patch) >= 2:
        ends = by_patch.iloc[[0, -1]]
        bar = seed_spread(ends)
        outcomes.append(weigh(ends["mean"].iloc[0] - ends["mean"].iloc[-1], bar))
        parts.append("patch " + ", ".join(f"{int(p)}: {m:.2f}" for p, m in
                                          zip(by_patch["patch"], by_patch["mean"]))
                     + f" ({bar_text(bar)})")
    by_depth = _series(group, "depth", {"patch": patch, "width": width})
    by_width = _series(group, "width", {"patch": patch, "depth": depth})
    if len(by_depth) >= 2:
        depth_gain = _gain_per_doubling(by_depth, "depth")
        text = f"depth {depth_gain:+.2f} pts per FLOP doubling"
        cells = [by_depth.iloc[[0, -1]]]
        if len(by_width) >= 2:
            width_gain = _gain_per_doubling(by_width, "width")
            cells.append(by_width.iloc[[0, -1]])
            diff = depth_gain - width_gain
            text += f", width {width_gain:+.2f}"
        else:
            diff = depth_gain
        bar = seed_spread(pd.concat(cells))
        outcomes.append(weigh(diff, bar))
        parts.append(f"{text} ({bar_text(bar)})")
    if not outcomes:
        return not_run(*meta, group, "train runs at >= 2 patch sizes or >= 2 depths of one "
                       "configuration"), table
    held = outcomes.count("higher")
    verdict = ("reproduced" if held == len(outcomes) == 2 else "partly" if held else
               "not reproduced" if "lower" in outcomes else "within noise")
    ours = f"{'; '.join(parts)} (top1 %, n={int(group['seed'].nunique())} seeds at most)"
    reason = (f"{held} of {len(outcomes)} parts hold beyond the seed spread "
              f"({', '.join(outcomes)}); base shape patch {patch}, depth {depth}, width {width}")
    return make_row(*meta, group, ours=ours, verdict=verdict, reason=reason), table


# what a rule says of a pattern seen in a single run: it needs a second to be "reproduced"
ONE_RUN = "; observed in 1 run only: a second run (seed) is needed before it counts as reproduced"


def inspection_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per kind=inspect run: per-layer trend and first-layer reach of attention distance."""
    rows = []
    for _, r in usable(runs, "inspect").iterrows():
        dist = r["attention_distance"]
        row = {"run_dir": r["run_dir"], "model": r["label"], "family": r["family"],
               "pos_similarity_neighbour_minus_far": r["pos_similarity_neighbour_minus_far"]}
        if isinstance(dist, list) and dist:
            layer_means = [sum(h) / len(h) for h in dist]
            size = r["image_size"] if pd.notna(r["image_size"]) else r["img_size"]
            uniform = (uniform_attention_distance(int(size), int(r["patch_size"]))
                       if pd.notna(size) and pd.notna(r["patch_size"]) else math.nan)
            row.update(layers=len(dist), first_layer_mean=layer_means[0],
                       last_layer_mean=layer_means[-1],
                       spearman_depth=spearman(range(len(dist)), layer_means),
                       layer0_max_head=max(dist[0]), uniform_distance=uniform,
                       layer0_far_heads=sum(h >= uniform / 2 for h in dist[0]))
        rows.append(row)
    return pd.DataFrame(rows, columns=[
        "run_dir", "model", "family", "layers", "first_layer_mean", "last_layer_mean",
        "spearman_depth", "layer0_max_head", "uniform_distance", "layer0_far_heads",
        "pos_similarity_neighbour_minus_far"])


def claim_attention_distance(runs: pd.DataFrame):
    """Attention distance grows with depth; some first-layer heads already attend far (Fig. 7 right).

    Data: kind=inspect runs of ViTs with attention_distance (pixels, [layer][head]). Per run:
    grows = Spearman(layer index, per-layer mean distance) > 0; far = the largest head distance
    in layer 0 >= the distance of a head attending to every patch alike
    (uniform_attention_distance): a head that reaches across the whole image, as the paper's do.
    reproduced: both hold in every run, and there are >= 2 runs. within noise: both hold in the
    one run there is (one run cannot tell a pattern from chance). partly: at least one holds in
    some run. not reproduced: neither holds anywhere.
    """
    meta = ("attention-distance", "Attention distance grows with depth; some low-layer heads attend far",
            "Fig. 7 right / App. D.7: mean attention distance grows with depth; some heads attend "
            "globally already in the lowest layers, others locally", "inspection")
    table = inspection_table(runs)
    vit = table[(table["family"] == "vit") & table["layers"].notna()]
    used = usable(runs, "inspect")
    if vit.empty:
        return not_run(*meta, used, "inspect runs of a ViT with attention_distance"), table
    grows = vit["spearman_depth"] > 0
    far = vit["layer0_max_head"] >= vit["uniform_distance"]
    verdict = (("reproduced" if len(vit) >= 2 else "within noise") if (grows & far).all() else
               "partly" if (grows | far).any() else "not reproduced")
    rho = vit["spearman_depth"]
    ours = (f"Spearman(depth, distance) {fmt_mean_std(rho.mean(), rho.std(), len(vit))}; "
            f"layer-0 max head {vit['layer0_max_head'].mean():.1f} px vs uniform "
            f"{vit['uniform_distance'].mean():.1f} px")
    reason = (f"grows in {int(grows.sum())}/{len(vit)} runs, a first-layer head as far as uniform attention "
              f"in {int(far.sum())}/{len(vit)}" + ONE_RUN * (len(vit) == 1))
    return make_row(*meta, used[used["run_dir"].isin(vit["run_dir"])], ours=ours, verdict=verdict,
                    reason=reason), table


def claim_pos_similarity(runs: pd.DataFrame):
    """Learned position embeddings encode 2-D distance (Fig. 7 centre).

    Data: kind=inspect runs with pos_similarity_neighbour_minus_far (mean cosine similarity of
    neighbouring patch positions minus that of far ones). reproduced: > 0 in every run, and there
    are >= 2 runs. within noise: > 0 in the one run there is. partly: > 0 in some. not
    reproduced: in none.
    """
    meta = ("pos-emb-similarity", "Position embeddings learn the 2-D image topology",
            "Fig. 7 centre: position-embedding cosine similarity shows distance, then row/column "
            "structure", "inspection")
    table = inspection_table(runs)
    used = usable(runs, "inspect").dropna(subset=["pos_similarity_neighbour_minus_far"])
    values = used["pos_similarity_neighbour_minus_far"].astype(float)
    if values.empty:
        return not_run(*meta, used, "inspect runs with pos_similarity_neighbour_minus_far"), table
    verdict = (("reproduced" if len(values) >= 2 else "within noise") if (values > 0).all() else
               "partly" if (values > 0).any() else "not reproduced")
    ours = f"neighbour − far similarity {fmt_mean_std(values.mean(), values.std(), len(values), 3)}"
    reason = f"> 0 in {int((values > 0).sum())}/{len(values)} runs" + ONE_RUN * (len(values) == 1)
    return make_row(*meta, used, ours=ours, verdict=verdict, reason=reason), table
