"""vitlib.analysis: analytic cases and independent (numpy / sklearn) re-implementations."""
import io
import itertools

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from vitlib.analysis import (
    attention_distances,
    attention_rollout,
    effective_receptive_field,
    embedding_filter_pca,
    embedding_filters,
    extract_features,
    few_shot_accuracy,
    few_shot_eval,
    mass_radius,
    mean_attention_distance,
    plot_attention_distance,
    plot_embedding_filters,
    plot_inductive_bias,
    plot_pos_embed_similarity,
    plot_rollout,
    pos_embed_cosine_similarity,
    pos_embed_similarity,
    rollout_maps,
    rollout_to_maps,
    sample_k_shot,
)


def tiny_vit(**overrides):
    """A small ViT through the registry (3 layers keep the tests fast)."""
    import vitlib
    kwargs = dict(img_size=32, num_classes=10, depth=3)
    kwargs.update(overrides)
    return vitlib.create_model("vit_ti4", **kwargs).eval()


# ---------------------------------------------------------------- mean attention distance

def numpy_mean_pairwise_distance(n):
    """Mean Euclidean distance over all ordered pairs (self-pairs included) of an n x n grid."""
    coords = np.array(list(itertools.product(range(n), range(n))), dtype=np.float64)
    diff = coords[:, None, :] - coords[None, :, :]
    return np.sqrt((diff ** 2).sum(-1)).mean()


def test_identity_attention_has_zero_distance():
    n, heads = 4, 3
    for prefix in (0, 1):
        attn = torch.eye(prefix + n * n).expand(2, heads, -1, -1)
        dist = mean_attention_distance(attn, (n, n), patch_size=16, num_prefix_tokens=prefix)
        assert dist.shape == (heads,)
        assert torch.allclose(dist, torch.zeros(heads))


@pytest.mark.parametrize("n,patch", [(2, 4), (5, 16), (7, 3)])
def test_uniform_attention_is_mean_pairwise_distance(n, patch):
    attn = torch.full((3, 2, n * n, n * n), 1.0 / (n * n))
    dist = mean_attention_distance(attn, (n, n), patch_size=patch, num_prefix_tokens=0)
    expected = numpy_mean_pairwise_distance(n) * patch
    assert np.allclose(dist.numpy(), expected, rtol=1e-5)


def test_prefix_tokens_are_ignored_not_renormalised():
    n, prefix = 3, 1
    t = prefix + n * n
    gen = torch.Generator().manual_seed(0)
    patch_part = torch.softmax(torch.randn(2, 4, n * n, n * n, generator=gen), -1)
    attn = torch.zeros(2, 4, t, t)
    attn[:, :, prefix:, prefix:] = patch_part * 0.5
    attn[:, :, :, :prefix] = 0.5  # half of every row goes to the class token
    attn[:, :, :prefix, prefix:] = 123.0  # the class token's own row must not count
    got = mean_attention_distance(attn, (n, n), patch_size=8, num_prefix_tokens=prefix)
    alone = mean_attention_distance(patch_part, (n, n), patch_size=8, num_prefix_tokens=0)
    assert torch.allclose(got, 0.5 * alone, atol=1e-5)  # not renormalised: mass on cls adds 0


def test_attention_distance_rejects_mismatched_tokens():
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        mean_attention_distance(torch.rand(1, 2, 10, 10), (3, 3), 4, num_prefix_tokens=0)
    with pytest.raises(ValueError, match="patch_size"):
        mean_attention_distance(torch.rand(1, 2, 10, 10), (3, 3), 0, num_prefix_tokens=1)


# ---------------------------------------------------------------- attention rollout

def numpy_a_hat(attn, fuse=np.mean):
    a = fuse(attn.numpy().astype(np.float64), axis=1) + np.eye(attn.shape[-1])
    a = a / 2
    return a / a.sum(-1, keepdims=True)


def test_rollout_of_identity_is_identity():
    eye = torch.eye(5).expand(2, 3, 5, 5)
    for fusion in ("mean", "max", "min"):
        out = attention_rollout([eye, eye, eye], head_fusion=fusion)
        assert torch.allclose(out, torch.eye(5).expand(2, 5, 5))


@pytest.mark.parametrize("fusion,fuse", [("mean", np.mean), ("max", np.max), ("min", np.min)])
def test_rollout_single_layer_and_order(fusion, fuse):
    gen = torch.Generator().manual_seed(1)
    a1, a2 = (torch.softmax(torch.randn(2, 3, 6, 6, generator=gen), -1) for _ in range(2))
    assert np.allclose(attention_rollout([a1], fusion).numpy(), numpy_a_hat(a1, fuse), atol=1e-6)
    expected = numpy_a_hat(a2, fuse) @ numpy_a_hat(a1, fuse)  # later layer on the left
    assert np.allclose(attention_rollout([a1, a2], fusion).numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout([a1], "median")


def test_rollout_maps_class_row_and_gap_mean():
    rollout = torch.rand(2, 5, 5)
    maps = rollout_to_maps(rollout, (2, 2), num_prefix_tokens=1)
    cls_row = rollout[:, 0, 1:]
    assert torch.allclose(maps, (cls_row / cls_row.amax(-1, keepdim=True)).view(2, 2, 2))
    gap = rollout_to_maps(rollout[:, 1:, 1:], (2, 2), num_prefix_tokens=0)
    mean_rows = rollout[:, 1:, 1:].mean(1)
    assert torch.allclose(gap, (mean_rows / mean_rows.amax(-1, keepdim=True)).view(2, 2, 2))


# ---------------------------------------------------------------- few-shot least squares

def blobs(n_per_class, k, dim, seed, spread=0.3, noise_seed=None):
    """Gaussian classes around centres drawn from `seed`; `noise_seed` draws a fresh sample."""
    centres = np.random.default_rng(seed).normal(size=(k, dim)) * 3
    rng = np.random.default_rng(seed if noise_seed is None else noise_seed)
    labels = np.repeat(np.arange(k), n_per_class)
    x = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(labels)


def test_few_shot_separable_data_is_perfect():
    x, y = blobs(20, 4, 8, seed=0)
    xt, yt = blobs(20, 4, 8, seed=0, noise_seed=1)  # same centres, fresh noise
    assert few_shot_accuracy(x, y, xt, yt, l2=1e-3) == 1.0


@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("n_per_class,dim", [(4, 50), (30, 6)])  # dual (N < F) and primal systems
@pytest.mark.parametrize("l2", [0.01, 1.0, 30.0])
def test_few_shot_matches_sklearn_ridge_classifier(k, n_per_class, dim, l2):
    sklearn_linear = pytest.importorskip("sklearn.linear_model")
    x, y = blobs(n_per_class, k, dim, seed=k, spread=4.0)  # overlapping classes: errors to match
    xt, yt = blobs(40, k, dim, seed=k, spread=4.0, noise_seed=100)
    y = y + 3  # labels need not start at 0
    yt = yt + 3
    clf = sklearn_linear.RidgeClassifier(alpha=l2).fit(x.double().numpy(), y.numpy())
    expected = (clf.predict(xt.double().numpy()) == yt.numpy()).mean()
    assert few_shot_accuracy(x, y, xt, yt, l2=l2) == pytest.approx(expected, abs=1e-12)
    from vitlib.analysis import fit_least_squares
    weight, bias, classes = fit_least_squares(x, y, l2)
    ours = classes[(xt.double() @ weight + bias).argmax(1)].numpy()
    assert (ours == clf.predict(xt.double().numpy())).all()


def test_few_shot_rejects_bad_l2():
    x, y = blobs(3, 2, 4, seed=0)
    with pytest.raises(ValueError, match="l2"):
        few_shot_accuracy(x, y, x, y, l2=0.0)


def test_sample_k_shot_is_seeded_and_balanced():
    labels = torch.tensor([0] * 10 + [1] * 7 + [2] * 12)
    idx = sample_k_shot(labels, 5, seed=3)
    assert torch.equal(torch.bincount(labels[idx]), torch.tensor([5, 5, 5]))
    assert len(set(idx.tolist())) == 15
    assert torch.equal(idx, sample_k_shot(labels, 5, seed=3))
    assert not torch.equal(idx, sample_k_shot(labels, 5, seed=4))
    with pytest.raises(ValueError, match="k must be"):
        sample_k_shot(labels, 8, seed=0)


def test_few_shot_eval_reports_mean_and_std():
    x, y = blobs(30, 3, 8, seed=0, spread=2.0)
    xt, yt = blobs(30, 3, 8, seed=0, spread=2.0, noise_seed=1)
    res = few_shot_eval(x, y, xt, yt, shots=(1, 5), seeds=(0, 1, 2), l2=1.0)
    assert set(res) == {1, 5}
    for k in (1, 5):
        subsets = [sample_k_shot(y, k, seed) for seed in (0, 1, 2)]
        accs = [few_shot_accuracy(x[i], y[i], xt, yt) for i in subsets]
        assert res[k][0] == pytest.approx(np.mean(accs))
        assert res[k][1] == pytest.approx(np.std(accs, ddof=1))
    with pytest.raises(ValueError, match="shot"):
        few_shot_eval(x, y, xt, yt, shots=(31,))


# ---------------------------------------------------------------- embeddings

def numpy_sincos_2d(gh, gw, dim):
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim // 4))
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    parts = []
    for c in (rows.ravel(), cols.ravel()):
        parts += [np.sin(c[:, None] * omega), np.cos(c[:, None] * omega)]
    return torch.tensor(np.concatenate(parts, 1))


def test_sincos_similarity_peaks_at_self_then_neighbours():
    gh = gw = 6
    sim = pos_embed_cosine_similarity(numpy_sincos_2d(gh, gw, 64), (gh, gw))
    assert sim.shape == (gh, gw, gh, gw)
    for i, j in itertools.product(range(gh), range(gw)):
        tile = sim[i, j]
        assert tile[i, j] == pytest.approx(1.0, abs=1e-5)
        second = torch.topk(tile.flatten(), 2).indices[1].item()
        r, c = divmod(second, gw)
        assert abs(r - i) + abs(c - j) == 1  # the runner-up is a 4-neighbour


def test_filter_pca_matches_numpy():
    w = torch.randn(40, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    comps, ratio = embedding_filter_pca(w, k=10)
    x = w.double().numpy().reshape(40, -1)
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    ours = comps.numpy().reshape(10, -1)
    for a, b in zip(ours, vt[:10]):  # equal up to the arbitrary SVD sign
        assert np.allclose(a, b, atol=1e-8) or np.allclose(a, -b, atol=1e-8)
    assert np.allclose(ratio.numpy(), (s ** 2)[:10] / (s ** 2).sum())
    with pytest.raises(ValueError, match="k must be"):
        embedding_filter_pca(w, k=41)


# ---------------------------------------------------------------- effective receptive field

def numpy_box_radius(layers, k, fraction):
    """Radius holding `fraction` of the L-fold convolution of a k x k box, computed directly."""
    p = np.ones(1)
    for _ in range(layers):
        p = np.convolve(p, np.ones(k))
    mass = np.outer(p, p)
    off = np.arange(len(p)) - (len(p) - 1) / 2
    dist = np.sqrt(off[:, None] ** 2 + off[None, :] ** 2).ravel()
    order = np.argsort(dist, kind="stable")
    cum = np.cumsum(mass.ravel()[order]) / mass.sum()
    return dist[order][np.argmax(cum >= fraction - 1e-12)]


@pytest.mark.parametrize("k,fraction", [(3, 0.9), (5, 0.5)])
def test_erf_of_constant_conv_stack_is_analytic(k, fraction):
    layers = 4
    convs = []
    for _ in range(layers):
        conv = nn.Conv2d(2, 2, k, padding=k // 2, bias=False)
        nn.init.constant_(conv.weight, 0.1)
        convs.append(conv)
    model = nn.Sequential(*convs)
    radii = effective_receptive_field(model, torch.randn(3, 2, 33, 33), fraction=fraction)
    expected = [numpy_box_radius(n, k, fraction) for n in range(1, layers + 1)]
    assert np.allclose(radii, expected, atol=1e-6)
    assert radii == sorted(radii) and radii[-1] > radii[0]


def test_mass_radius_of_a_point_is_zero():
    m = torch.zeros(9, 9)
    m[4, 4] = 1.0
    assert mass_radius(m) == 0.0
    with pytest.raises(ValueError, match="fraction"):
        mass_radius(m, fraction=1.5)


def test_erf_grows_with_stage_for_a_cifar_resnet():
    resnet = pytest.importorskip("vitlib.models.cifar_resnet")
    model = resnet.CifarResNet((1, 1, 1, 1), (8, 8, 8, 8), num_classes=10, in_chans=3)
    radii = effective_receptive_field(model, torch.randn(4, 3, 32, 32))
    assert len(radii) == 4
    assert all(b >= a for a, b in zip(radii, radii[1:])) and radii[-1] > radii[0]


def test_erf_needs_stages():
    with pytest.raises(ValueError, match="stages_fn"):
        effective_receptive_field(nn.Linear(2, 2), torch.randn(1, 1, 4, 4))


# ---------------------------------------------------------------- model-level helpers

def test_model_attention_distances_and_rollout():
    model = tiny_vit()
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    dist = attention_distances(model, images, batch_size=3)  # uneven batches are weighted
    with torch.no_grad():
        _, attns = model(images, return_attention=True)
    expected = torch.stack([mean_attention_distance(a, (8, 8), 4, 1) for a in attns])
    assert dist.shape == (3, model.num_heads)
    assert torch.allclose(dist, expected, atol=1e-4)
    assert (dist > 0).all() and (dist < 4 * 7 * 2 ** 0.5).all()
    maps = rollout_maps(model, images[:2])
    assert maps.shape == (2, 8, 8) and maps.min() >= 0
    assert torch.allclose(maps.amax((1, 2)), torch.ones(2))
    gap = tiny_vit(pool="gap")
    assert rollout_maps(gap, images[:2]).shape == (2, 8, 8)
    model.train()
    attention_distances(model, images[:1])
    assert model.training  # mode restored


def test_model_embeddings():
    model = tiny_vit()
    filters, ratio = embedding_filters(model, k=28, return_variance=True)
    assert filters.shape == (28, 3, 4, 4) and ratio.shape == (28,)
    assert torch.allclose(filters.flatten(1).amin(1), torch.zeros(28))
    assert torch.allclose(filters.flatten(1).amax(1), torch.ones(28))
    assert (ratio[:-1] >= ratio[1:]).all()
    with pytest.raises(ValueError, match="k must be"):
        embedding_filters(model, k=49)  # C*P*P = 48
    for pos_emb in ("learned", "learned2d", "sincos2d"):
        assert pos_embed_similarity(tiny_vit(pos_emb=pos_emb)).shape == (8, 8, 8, 8)
    for pos_emb in ("none", "relative"):
        with pytest.raises(ValueError, match=pos_emb):
            pos_embed_similarity(tiny_vit(pos_emb=pos_emb))


def test_extract_features_from_tensor_and_dataset():
    model = tiny_vit()
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)

    class FakeDataset:
        def __init__(self):
            self.images, self.mean, self.std = images, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)

    feats = extract_features(model, FakeDataset(), batch_size=2)
    mean = torch.tensor((0.5, 0.4, 0.3)).view(1, 3, 1, 1)
    std = torch.tensor((0.2, 0.25, 0.3)).view(1, 3, 1, 1)
    x = (images.float() / 255 - mean) / std
    assert feats.shape == (5, model.embed_dim)
    assert torch.allclose(feats, extract_features(model, x, batch_size=4), atol=1e-5)
    with torch.no_grad():
        direct = model.forward_head(model.forward_features(x), pre_logits=True)
    assert torch.allclose(feats, direct, atol=1e-5)
    with pytest.raises(ValueError, match="data must be"):
        extract_features(model, images)


# ---------------------------------------------------------------- plots

def check_figure(fig, xlabel_part, ylabel_part):
    assert isinstance(fig, Figure)
    fig.savefig(io.BytesIO(), format="png")  # renders without a display
    xlabels = [ax.get_xlabel() for ax in fig.axes] + [fig.get_supxlabel()]
    ylabels = [ax.get_ylabel() for ax in fig.axes] + [fig.get_supylabel()]
    assert any(xlabel_part in lbl for lbl in xlabels), xlabels
    assert any(ylabel_part in lbl for lbl in ylabels), ylabels


def test_plots_return_labelled_figures():
    check_figure(plot_embedding_filters(torch.rand(10, 3, 4, 4), ncols=7, variance=torch.rand(10)),
                 "pixels", "pixels")
    check_figure(plot_embedding_filters(torch.rand(4, 1, 4, 4)), "pixels", "pixels")
    sim = pos_embed_cosine_similarity(numpy_sincos_2d(4, 4, 32), (4, 4))
    fig = plot_pos_embed_similarity(sim)
    check_figure(fig, "Input patch column", "Input patch row")
    assert any(ax.get_ylabel() == "Cosine similarity" for ax in fig.axes)  # the colour bar
    check_figure(plot_attention_distance(torch.rand(12, 3) * 100), "layer", "pixels")
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    check_figure(plot_rollout(images, torch.rand(3, 8, 8)), "pixel", "Attention rollout")
    check_figure(plot_rollout(torch.randn(2, 3, 32, 32), torch.rand(2, 8, 8), mean=(0.5,) * 3,
                              std=(0.2,) * 3), "pixel", "Input")
    check_figure(plot_inductive_bias({"ResNet-18": [3.0, 7.0, 12.0, 15.0]}, torch.rand(12, 3) * 20),
                 "depth", "pixels")
    with pytest.raises(ValueError, match="dist"):
        plot_attention_distance(torch.rand(12))


def test_neighbour_minus_far_similarity_is_positive_for_sincos_and_zero_for_constant():
    from vitlib.analysis import neighbour_minus_far_similarity, pos_embed_cosine_similarity
    from vitlib.models.posemb import sincos_2d
    sim = pos_embed_cosine_similarity(sincos_2d(6, 6, 64), (6, 6))
    assert neighbour_minus_far_similarity(sim) > 0.1
    assert neighbour_minus_far_similarity(torch.ones(4, 4, 4, 4)) == 0.0
