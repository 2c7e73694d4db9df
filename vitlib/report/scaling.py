"""Claims about scale: training-set size, pre-training-set size, compute and resolution.

Each `claim_*` takes the runs DataFrame of `collect.load_runs` and returns `(row, table)`: its row
of the claims table and the supporting table saved as `tables/<row["table"]>.csv/.md`. The
docstring of each function is its verdict rule. Only finished runs count (`collect.usable`);
means are over seeds and std is the sample std over seeds.
"""
from __future__ import annotations

import math

import pandas as pd

from .collect import fmt_cell, summarise, usable
from .verdict import bar_text, best_per, join_columns, make_row, not_run, on_dataset, seed_spread, weigh

FAMILIES = ("vit", "resnet", "hybrid")


def _cell(best: pd.DataFrame, family: str, key: str) -> pd.DataFrame:
    return best[best["family"] == family].set_index(key)


def data_size_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The data-size sweep: kind=train runs on cifar10 (else the most common data set) of the
    configurations (model, overrides, recipe, steps, lr) trained at >= 2 train_size; ablations run
    at a single size are left out."""
    df = on_dataset(usable(runs, "train"), "cifar10").dropna(subset=["train_size"])
    df = df[df["family"].isin(FAMILIES)]
    config = join_columns(df, ["label", "recipe", "steps", "lr"])
    return df[df.groupby(config)["train_size"].transform("nunique") >= 2]


def pretrain_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The pre-training-size sweep: kind=finetune runs on cifar10 (else the most common
    downstream set), pre-trained on tiny-imagenet (else the most common set), fine-tuned at the
    most common img_size (the resolution claim varies that one), on the largest downstream
    training set (a study may also fine-tune on subsets; those are not averaged in)."""
    df = on_dataset(usable(runs, "finetune"), "cifar10").dropna(subset=["pretrain_size"])
    df = on_dataset(df[df["family"].isin(FAMILIES)], "tiny-imagenet", column="pretrain_dataset")
    df = on_dataset(df, None, column="img_size")
    return df[df["train_size"] == df["train_size"].max()] if len(df) else df


def claim_data_size(runs: pd.DataFrame):
    """ResNets beat ViT on small training sets; ViT catches up with more data (Fig. 3/4, Table 5).

    Data: data_size_runs (configurations trained at >= 2 sizes), families vit, resnet, hybrid. At
    each train_size each family is represented by its best configuration (model and budget: highest
    mean top1 over seeds; the table keeps one row per budget). ResNet lead = resnet top1 - vit top1
    at the smallest and the largest size both have; bar = seed_spread of those four cells (2 x the
    largest seed std; unknown with one seed).
    reproduced: the ResNet leads at the smallest size and the ViT leads at the largest, both by
    more than the bar (the paper's crossover). partly: the lead shrinks by more than the bar but
    the ViT does not overtake (the paper's crossover needs far more data than CIFAR-10 has).
    within noise: the lead changes by no more than the bar. not reproduced: it grows by more.
    """
    meta = ("data-size", "ResNets beat ViT on small training sets; ViT catches up with more data",
            "Fig. 3/4, Table 5: BiT ResNets beat ViT on small pre-training sets and ViT overtakes "
            "them on the largest; ViT-B/16 CIFAR-10 98.13 (ImageNet-1k) → 99.00 (JFT-300M), "
            "ViT-L/16 97.86 → 99.38", "data_size")
    df = data_size_runs(runs)
    table = summarise(df, ["dataset", "family", "label", "steps", "train_size"])
    best = best_per(table, ["family", "train_size"])
    vit, resnet = _cell(best, "vit", "train_size"), _cell(best, "resnet", "train_size")
    sizes = sorted(set(vit.index) & set(resnet.index))
    if len(sizes) < 2:
        return not_run(*meta, df, "train runs of vit and resnet at >= 2 common train_size"), table
    small, large = sizes[0], sizes[-1]
    lead = {s: resnet.at[s, "mean"] - vit.at[s, "mean"] for s in (small, large)}
    bar = seed_spread(pd.concat([resnet.loc[[small, large]], vit.loc[[small, large]]]))
    ours = "; ".join(f"{int(s):,} images: ResNet {fmt_cell(resnet.loc[s])}, ViT {fmt_cell(vit.loc[s])}"
                     for s in (small, large))
    change = weigh(lead[large] - lead[small], bar)
    crossover = weigh(lead[small], bar) == "higher" and weigh(lead[large], bar) == "lower"
    if crossover:
        verdict, what = "reproduced", "the ResNet led on the smallest set and the ViT overtook it"
    elif change == "lower":
        verdict = "partly"
        what = ("the ViT narrowed the gap but did not overtake" if lead[large] > 0 else
                "the ViT's lead grew, but the ResNet did not lead on the smallest set")
    elif change == "within noise":
        verdict, what = "within noise", "the gap did not change by more than the seed spread"
    else:
        verdict, what = "not reproduced", "the ResNet's lead grew with more data"
    reason = (f"{what}: ResNet lead {lead[small]:+.2f} pts at {int(small):,} images → "
              f"{lead[large]:+.2f} at {int(large):,} ({bar_text(bar)}; {df['dataset'].iloc[0]}, "
              "best configuration of each family)")
    return make_row(*meta, df, ours=ours, verdict=verdict, reason=reason), table


def _pretrain_gain(runs, value: str, meta: tuple, what: str, draw_std: str | None = None):
    """Shared rule of the pre-training-size claims (see claim_pretrain_size); `draw_std` names a
    column of each run's own spread (over the probe's k-shot draws) that the bar must also clear."""
    df = pretrain_runs(runs)
    table = summarise(df, ["dataset", "train_size", "pretrain_dataset", "img_size", "family", "label",
                           "pretrain_size"], value)
    best = best_per(table, ["family", "pretrain_size"])
    cells = {f: _cell(best, f, "pretrain_size") for f in ("vit", "resnet")}
    sizes = sorted(set(cells["vit"].index) & set(cells["resnet"].index))
    if len(sizes) < 2:
        return not_run(*meta, df, f"finetune runs of vit and resnet with {what} at >= 2 common "
                       "pretrain_size"), table
    cells = {f: c.loc[[sizes[0], sizes[-1]]] for f, c in cells.items()}
    gain = {f: c["mean"].iloc[-1] - c["mean"].iloc[0] for f, c in cells.items()}
    bar = seed_spread(pd.concat(cells.values()))
    bar_says = bar_text(bar)
    if draw_std:
        compared = pd.concat(c.reset_index()[["family", "label", "pretrain_size"]] for c in cells.values())
        draws = 2 * df.merge(compared)[draw_std].max()
        if draws > bar or (math.isnan(bar) and not math.isnan(draws)):
            bar, bar_says = draws, f"2 × std over the k-shot draws = {draws:.2f}"
    diff = gain["vit"] - gain["resnet"]
    verdict, what = {"higher": ("reproduced", "the ViT gained more than the ResNet"),
                     "within noise": ("within noise", "the gains differ by no more than the noise"),
                     "lower": ("not reproduced", "the ResNet gained more than the ViT")}[weigh(diff, bar)]
    ours = f"pre-training images {int(sizes[0]):,} → {int(sizes[-1]):,}: " + "; ".join(
        f"{name} {fmt_cell(c.iloc[0])} → {fmt_cell(c.iloc[-1])}"
        for name, c in (("ViT", cells["vit"]), ("ResNet", cells["resnet"])))
    reason = (f"{what}: gain from the smallest to the largest pre-training set ViT "
              f"{gain['vit']:+.2f}, ResNet {gain['resnet']:+.2f} pts ({bar_says})")
    return make_row(*meta, df, ours=ours, verdict=verdict, reason=reason), table


def claim_pretrain_size(runs: pd.DataFrame):
    """ViT gains more than ResNets from a larger pre-training set (Fig. 3/4, Table 5).

    Data: pretrain_runs (one downstream set, one pre-training set, one img_size); finetune_top1
    vs pretrain_size, each family represented by its best configuration at each size.
    gain = top1 at the largest - top1 at the smallest pretrain_size both families have, per
    family; bar = seed_spread of the four cells compared (2 x the largest seed std; unknown with
    one seed). reproduced: ViT's gain exceeds ResNet's by more than the bar. within noise: the
    gains differ by no more than the bar. not reproduced: ResNet's gain exceeds ViT's by more.
    """
    meta = ("pretrain-size", "ViT gains more than ResNets from a larger pre-training set",
            "Table 5 (CIFAR-10): ViT-L/16 97.86 (ImageNet-1k) → 99.16 (ImageNet-21k) → 99.38 "
            "(JFT-300M); Fig. 3: BiT beats ViT on ImageNet-1k, ViT overtakes on JFT-300M",
            "pretrain_size")
    return _pretrain_gain(runs, "finetune_top1", meta, "finetune_top1")


def claim_few_shot(runs: pd.DataFrame):
    """The pre-training-size claim measured by 5-shot linear accuracy (Fig. 4).

    Same data and rule as claim_pretrain_size, with few_shot["5"] (the 5-shot accuracy of the
    frozen pre-trained features, averaged over the run's k-shot draws) in place of finetune_top1.
    The probe does not depend on the fine-tuning, so seeds that share their draws (the whole
    training set) measure the same number twice: the bar is the larger of the seed spread and
    2 x the largest std over one run's draws (few_shot_std["5"]).
    """
    meta = ("pretrain-size-5shot", "5-shot: ViT gains more than ResNets from more pre-training data",
            "Fig. 4 (ImageNet 5-shot linear accuracy, JFT subsets 9M/30M/90M/300M): ResNets win "
            "on the small subsets, ViT overtakes them on the largest", "few_shot")
    return _pretrain_gain(runs, "few_shot_5", meta, 'few_shot["5"]', draw_std="few_shot_5_std")


def compute_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the compute claims: kind=train runs with train_flops and accuracy on cifar10
    (else the most common set); finetune runs (their own fine-tuning FLOPs) when no train run
    qualifies."""
    df = usable(runs, "train").dropna(subset=["train_flops", "accuracy"])
    if df.empty:
        df = usable(runs, "finetune").dropna(subset=["train_flops", "accuracy"])
    df = on_dataset(df, "cifar10")
    return df[df["family"].isin(FAMILIES)]


def compute_points(df: pd.DataFrame) -> pd.DataFrame:
    """One point per configuration (family, model, train_size, steps) of compute_runs: seed means
    of accuracy (top1, %) and cost."""
    cols = ["dataset", "family", "label", "train_size", "steps"]
    if df.empty:
        return pd.DataFrame(columns=[*cols, "params", "flops_per_image", "train_flops", "top1",
                                     "top1_std", "n", "images_per_s", "train_seconds"])
    num = df.astype({c: float for c in ("params", "flops_per_image", "train_flops", "accuracy",
                                        "images_per_s", "train_seconds")})
    out = num.groupby(cols, dropna=False).agg(
        params=("params", "first"), flops_per_image=("flops_per_image", "first"),
        train_flops=("train_flops", "mean"), top1=("accuracy", "mean"),
        top1_std=("accuracy", "std"), n=("accuracy", "count"),
        images_per_s=("images_per_s", "mean"), train_seconds=("train_seconds", "mean"))
    return out.reset_index().sort_values(["family", "train_flops"]).reset_index(drop=True)


def matched_size(points: pd.DataFrame, families) -> float | None:
    """The training-set size the compute claims compare at: the largest at which each of
    `families` has a point; None when they share none. The paper's compute comparisons hold the
    pre-training set fixed (JFT-300M), and a point trained on fewer images (cheap where it stopped
    early, poor because data-starved) would otherwise set a budget that more data beats. NaN when
    no point states its size (all compare)."""
    if points["train_size"].isna().all():
        return math.nan
    sizes = [set(points.loc[points["family"] == f, "train_size"].dropna()) for f in families]
    common = set.intersection(*sizes) if sizes else set()
    return max(common) if common else None


def at_size(points: pd.DataFrame, size: float | None) -> pd.DataFrame:
    """The compute points (or runs) trained on `size` images: all of them for NaN (matched_size),
    none for None."""
    if size is None:
        return points.iloc[0:0]
    return points if math.isnan(size) else points[points["train_size"] == size]


def by_family_at_size(points: pd.DataFrame, families) -> tuple:
    """(size, one frame per family): the compute points of `families` at their matched_size."""
    size = matched_size(points, families)
    compared = at_size(points, size)
    return size, *(compared[compared["family"] == f] for f in families)


def size_text(size: float | None) -> str:
    """" (at 45,000 training images)" for a matched_size, "" where there is none or it is unknown."""
    return "" if size is None or math.isnan(size) else f" (at {int(size):,} training images)"


def _flops_to_reach(points: pd.DataFrame, accuracy: float) -> float:
    reach = points[points["top1"] >= accuracy - 1e-9]
    return float(reach["train_flops"].min()) if len(reach) else math.nan


def _best_within(points: pd.DataFrame, budget: float) -> float:
    """The Pareto frontier: the best accuracy reachable with at most `budget` training FLOPs."""
    inside = points[points["train_flops"] <= budget * (1 + 1e-9)]
    return float(inside["top1"].max()) if len(inside) else math.nan


def _ratio_verdict(ratio: float) -> str:
    return "reproduced" if ratio >= 2 else "partly" if ratio > 1 else "not reproduced"


def _frontier(points: pd.DataFrame) -> pd.DataFrame:
    """The points on one family's Pareto frontier: each more accurate than every point that costs
    as much or less (the rest can move within their noise without changing what the frontier reaches)."""
    ordered = points.sort_values(["train_flops", "top1"], ascending=[True, False])
    return ordered[ordered["top1"] > ordered["top1"].cummax().shift(fill_value=-math.inf)]


def _points_bar(*families: pd.DataFrame) -> float:
    """seed_spread (their top1_std and n) of the compute points on the families' frontiers."""
    return seed_spread(pd.concat([_frontier(f) for f in families]).rename(columns={"top1_std": "std"}))


def claim_compute(runs: pd.DataFrame):
    """ViT reaches a given accuracy with 2-4x less training compute than ResNets (Fig. 5, Table 6).

    Data: compute_points (seed means per configuration) at matched_size: the largest training set
    both families trained on. Per family the Pareto frontier is the best accuracy reachable within
    each FLOP budget. target = the highest accuracy both the ViT and the ResNet frontiers reach;
    ratio = ResNet FLOPs / ViT FLOPs needed to reach it.
    reproduced: ratio >= 2 (the paper's 2-4x). partly: 1 < ratio < 2. not reproduced: ratio <= 1
    (on small data the expected outcome: ResNets are the more compute-efficient).
    within noise: the verdict changes when either family's target is lowered by the bar
    (seed_spread of the points on the two frontiers: 2 x the largest seed std), or one of them has
    one seed.
    """
    meta = ("compute", "ViT needs 2-4× less training compute than ResNets for the same accuracy",
            "Fig. 5 / Table 6: ViT uses about 2–4× less pre-training compute than ResNets for the "
            "same transfer accuracy; ViT-B/16 224 exaFLOPs → 84.15 vs ResNet152x2 563 → 84.97 "
            "(ImageNet)", "compute")
    used = compute_runs(runs)
    points = compute_points(used)
    size, vit, resnet = by_family_at_size(points, ("vit", "resnet"))
    if vit.empty or resnet.empty:
        return not_run(*meta, used, "runs of vit and resnet with train_flops and accuracy, "
                                    "on a common training-set size"), points
    target = min(vit["top1"].max(), resnet["top1"].max())
    f_vit, f_res = _flops_to_reach(vit, target), _flops_to_reach(resnet, target)
    ratio = f_res / f_vit
    bar = _points_bar(vit, resnet)
    band = {_ratio_verdict(_flops_to_reach(resnet, target - r) / _flops_to_reach(vit, target - v))
            for r, v in ((0, 0), (bar, 0), (0, bar))} if not math.isnan(bar) else {"unknown"}
    verdict = _ratio_verdict(ratio) if band == {_ratio_verdict(ratio)} else "within noise"
    both = pd.concat([vit, resnet])
    fewest, most = int(both["n"].min()), int(both["n"].max())
    ours = (f"to reach {target:.2f}%: ViT {f_vit:.3g} FLOPs, ResNet {f_res:.3g} FLOPs{size_text(size)} "
            f"({len(both)} configurations, n={fewest if fewest == most else f'{fewest}-{most}'} seeds)")
    reason = (f"ResNet/ViT FLOPs at equal accuracy = {ratio:.2f} (paper: 2-4; {bar_text(bar)}"
              + ("; the verdict changes within it" if verdict == "within noise" else "") + ")")
    return make_row(*meta, at_size(used, size), ours=ours, verdict=verdict, reason=reason), points


def claim_compute_hybrid(runs: pd.DataFrame):
    """Hybrids beat pure ViT at small compute budgets (Fig. 5, Table 6).

    Data: compute_points at matched_size: the largest training set both families trained on.
    budget = the smallest FLOP count at which both the hybrid and the ViT have a run there (max of
    their cheapest runs); compare the Pareto-frontier accuracies at that budget;
    bar = seed_spread of the points on the hybrid's and the ViT's frontiers (2 x the largest seed std).
    reproduced: hybrid - ViT > bar at that budget. within noise: |hybrid - ViT| <= bar (or a point
    has one seed). not reproduced: ViT - hybrid > bar. The reason also gives the gap at the largest
    common budget (the paper: the gap vanishes for larger models), when it is larger.
    """
    meta = ("compute-hybrid", "Hybrids beat pure ViT at small compute budgets",
            "Fig. 5 / Table 6: hybrids beat pure ViT at small budgets, the gap vanishes for larger "
            "models; R50x1+ViT-B/16 274 exaFLOPs → 85.58 vs ViT-B/16 224 → 84.15", "compute")
    df = compute_runs(runs)
    points = compute_points(df)
    size, vit, hybrid = by_family_at_size(points, ("vit", "hybrid"))
    used = df[df["family"] != "resnet"]
    if vit.empty or hybrid.empty:
        return not_run(*meta, used, "runs of vit and hybrid with train_flops and accuracy, "
                                    "on a common training-set size"), points
    low = max(vit["train_flops"].min(), hybrid["train_flops"].min())
    high = min(vit["train_flops"].max(), hybrid["train_flops"].max())
    gap = {b: _best_within(hybrid, b) - _best_within(vit, b) for b in (low, high)}
    bar = _points_bar(vit, hybrid)
    cheaper = "ViT" if vit["train_flops"].max() == high else "hybrid"
    larger = (f", {gap[high]:+.2f} at {high:.3g}" if high > low else
              f"; no larger budget has runs of both (the {cheaper}'s largest: {high:.3g})")
    ours = (f"at {low:.3g} FLOPs{size_text(size)}: hybrid {_best_within(hybrid, low):.2f}%, "
            f"ViT {_best_within(vit, low):.2f}%")
    verdict = {"higher": "reproduced", "within noise": "within noise",
               "lower": "not reproduced"}[weigh(gap[low], bar)]
    reason = f"hybrid − ViT {gap[low]:+.2f} pts at {low:.3g} FLOPs{larger} ({bar_text(bar)})"
    return make_row(*meta, at_size(used, size), ours=ours, verdict=verdict, reason=reason), points


def claim_resolution(runs: pd.DataFrame):
    """Fine-tuning at a higher resolution than pre-training helps (§3.2).

    Data: kind=finetune runs; runs of one pretrained configuration (model, downstream set and its
    training-set size, pretrain_dataset, pretrain_size) at >= 2 img_size are compared: diff =
    finetune_top1 at the largest img_size - at the smallest, weighed against the bar
    (seed_spread of the two cells: 2 x the larger seed std; unknown with one seed).
    reproduced: every comparison higher by more than the bar. partly: some are, others not.
    within noise: none differs by more than the bar. not reproduced: some are lower by more than
    the bar and none higher.
    """
    meta = ("resolution", "Fine-tuning at a higher resolution helps",
            "§3.2: \"It is often beneficial to fine-tune at higher resolution than pre-training\" "
            "(fine-tuned at 384 px after 224 px pre-training, Table 4)", "resolution")
    df = usable(runs, "finetune").dropna(subset=["finetune_top1", "img_size"])
    keys = ["label", "dataset", "train_size", "pretrain_dataset", "pretrain_size"]
    table = summarise(df, [*keys, "img_size"], "finetune_top1")
    outcomes, parts, reasons, used = [], [], [], []
    for _, group in df.groupby(join_columns(df, keys)):
        cells = summarise(group, ["img_size"], "finetune_top1")
        if len(cells) < 2:
            continue
        low, high = cells.iloc[0], cells.iloc[-1]
        diff, bar = high["mean"] - low["mean"], seed_spread(cells.iloc[[0, -1]])
        outcomes.append(weigh(diff, bar))
        parts.append(f"{group['label'].iloc[0]}: {int(low['img_size'])} px {fmt_cell(low)} → "
                     f"{int(high['img_size'])} px {fmt_cell(high)}")
        reasons.append(f"{int(high['img_size'])} px vs {int(low['img_size'])} px {diff:+.2f} pts "
                       f"({bar_text(bar)})")
        used.append(group)
    if not outcomes:
        return not_run(*meta, df, "finetune runs of one pretrained model at >= 2 img_size"), table
    found = set(outcomes)
    verdict = ("reproduced" if found == {"higher"} else "partly" if "higher" in found else
               "within noise" if found == {"within noise"} else "not reproduced")
    what = {"reproduced": "the higher resolution was better beyond the seed spread",
            "partly": "the higher resolution was better in some comparisons only",
            "within noise": "the resolutions differ by no more than the seed spread",
            "not reproduced": "the higher resolution was worse"}[verdict]
    return make_row(*meta, pd.concat(used), ours="; ".join(parts), verdict=verdict,
                    reason=f"{what}: " + "; ".join(reasons)), table
