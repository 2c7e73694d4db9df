"""The ViT against independent implementations (timm, torchvision, the official .npz naming) and
the paper's Table 1; every named model builds and trains a step on the CPU."""
import pytest
import timm
import torch
import torchvision

import vitlib
from vitlib.flops import shapes_only
from vitlib.models.posemb import resize_grid, sincos_2d
from vitlib.models.weights import load_pretrained, to_official_npz

torch.manual_seed(0)


def randomise(model):
    """Random values everywhere (the zero-initialised head and class token would hide bugs)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model.eval()


def small_timm(pool="token", **kw):
    args = dict(img_size=32, patch_size=4, num_classes=7, embed_dim=48, depth=3, num_heads=3, mlp_ratio=2)
    if pool == "gap":  # the official GAP: mean of the tokens after the final LayerNorm
        args.update(global_pool="avg", class_token=False, fc_norm=False)
    args.update(kw)
    return randomise(timm.models.vision_transformer.VisionTransformer(**args))


def small_vitlib(pool="token", **kw):
    args = dict(num_classes=7, img_size=32, patch_size=4, embed_dim=48, depth=3, num_heads=3, mlp_dim=96, pool=pool)
    args.update(kw)
    return vitlib.create_model("vit_ti4", **args).eval()


@pytest.mark.parametrize("pool", ["token", "gap"])
def test_timm_weights_give_timm_logits(tmp_path, pool):
    ref = small_timm(pool)
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    model = load_pretrained(small_vitlib(pool), tmp_path / "timm.pth")
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max() <= 1e-5
        # the explicit attention path (used by the analyses) gives the same logits
        logits, attentions = model(x, return_attention=True)
    assert (logits - ref(x)).abs().max() <= 1e-5
    tokens = 64 + (pool == "token")
    assert len(attentions) == 3 and attentions[0].shape == (4, 3, tokens, tokens)
    assert torch.allclose(attentions[0].sum(-1), torch.ones(4, 3, tokens), atol=1e-5)


def test_timm_safetensors(tmp_path):
    from safetensors.torch import save_file
    ref = small_timm()
    save_file(ref.state_dict(), tmp_path / "w.safetensors")
    model = load_pretrained(small_vitlib(), tmp_path / "w.safetensors")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max() <= 1e-5


@pytest.mark.parametrize("representation_size", [None, 24])
def test_torchvision_weights_give_torchvision_logits(tmp_path, representation_size):
    ref = torchvision.models.VisionTransformer(image_size=32, patch_size=4, num_layers=3, num_heads=3,
                                               hidden_dim=48, mlp_dim=96, num_classes=7,
                                               representation_size=representation_size)
    randomise(ref)
    torch.save(ref.state_dict(), tmp_path / "tv.pth")
    model = load_pretrained(small_vitlib(representation_size=representation_size), tmp_path / "tv.pth")
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max() <= 1e-5


def hub_names(sd):
    """transformers 5.x layer names -> the 4.x ones, which the checkpoints on the Hub use."""
    renames = {".layers.": ".encoder.layer.", "attention.q_proj": "attention.attention.query",
               "attention.k_proj": "attention.attention.key", "attention.v_proj": "attention.attention.value",
               "attention.o_proj": "attention.output.dense", "mlp.fc1": "intermediate.dense",
               "mlp.fc2": "output.dense"}
    out = {}
    for key, value in sd.items():
        key = "." + key
        for old, new in renames.items():
            key = key.replace(old, new)
        out[key[1:]] = value
    return out


@pytest.mark.parametrize("head", [True, False])
@pytest.mark.parametrize("naming", ["installed", "hub"])
def test_transformers_weights_give_transformers_outputs(tmp_path, head, naming):
    """A randomly initialised Hugging Face ViT (ViTForImageClassification, or the headless
    ViTModel) saved as its state dict, in the installed transformers' names and in the 4.x names
    of the Hub's checkpoints, loads into vitlib with equal logits / final features."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(image_size=32, patch_size=4, num_channels=3, hidden_size=48,
                                    num_hidden_layers=3, num_attention_heads=3, intermediate_size=96,
                                    num_labels=7, layer_norm_eps=1e-6, hidden_act="gelu")
    ref = (transformers.ViTForImageClassification(config) if head else
           transformers.ViTModel(config, add_pooling_layer=False))
    randomise(ref)
    sd = ref.state_dict()
    torch.save(hub_names(sd) if naming == "hub" else sd, tmp_path / "hf.bin")
    model = load_pretrained(small_vitlib(), tmp_path / "hf.bin")
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        if head:
            assert (model(x) - ref(pixel_values=x).logits).abs().max() <= 1e-5
        else:  # the final layer norm's class token, before any head
            ours, theirs = model.forward_features(x), ref(pixel_values=x).last_hidden_state
            assert (ours - theirs).abs().max() <= 1e-5


def test_official_npz_naming_read_by_timm_and_vitlib(tmp_path):
    source = randomise(small_vitlib())
    to_official_npz(source, tmp_path / "ViT-tiny.npz")
    # timm's own reader of the official checkpoints is the independent check of the naming
    ref = small_timm()
    timm.models.vision_transformer._load_weights(ref, str(tmp_path / "ViT-tiny.npz"))
    loaded = load_pretrained(small_vitlib(), tmp_path / "ViT-tiny.npz")
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
        assert (ref(x) - source(x)).abs().max() <= 1e-5
    # the tanh pre-logits layer (`representation_size`) round-trips too
    source = randomise(small_vitlib(representation_size=24))
    to_official_npz(source, tmp_path / "pre.npz")
    loaded = load_pretrained(small_vitlib(representation_size=24), tmp_path / "pre.npz")
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def test_npz_read_into_other_resolution_and_class_count(tmp_path):
    source = randomise(small_vitlib())
    to_official_npz(source, tmp_path / "w.npz")
    model = load_pretrained(small_vitlib(num_classes=3, img_size=64), tmp_path / "w.npz")
    assert model.pos_embed.shape == (1, 1 + 16 * 16, 48)
    assert torch.equal(model.pos_embed[0, 0], source.pos_embed[0, 0])  # class token kept apart
    assert torch.count_nonzero(model.head.weight) == 0  # a new zero-initialised head
    assert torch.equal(model.blocks[2].mlp.fc2.weight, source.blocks[2].mlp.fc2.weight)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_misfitting_file_names_first_key_and_shapes(tmp_path):
    torch.save(small_timm(embed_dim=60).state_dict(), tmp_path / "w.pth")
    with pytest.raises(ValueError, match=r"'cls_token' has shape \(1, 1, 60\) in the checkpoint but \(1, 1, 48\)"):
        load_pretrained(small_vitlib(), tmp_path / "w.pth")
    torch.save(small_timm(depth=4).state_dict(), tmp_path / "deeper.pth")
    with pytest.raises(ValueError, match="blocks.3"):
        load_pretrained(small_vitlib(), tmp_path / "deeper.pth")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_pretrained(small_vitlib(), tmp_path / "missing.npz")


def test_attention_kernels_agree_with_relative_bias_and_dropout_off():
    for pos_emb in ("learned", "learned2d", "sincos2d", "relative", "none"):
        model = randomise(small_vitlib(pos_emb=pos_emb, attn_impl="sdpa"))
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            ref = model(x)
            for kernel in ("explicit", "auto"):
                other = small_vitlib(pos_emb=pos_emb, attn_impl=kernel)
                other.load_state_dict(model.state_dict())
                assert (other(x) - ref).abs().max() <= 1e-5, (pos_emb, kernel)
            assert (model(x, return_attention=True)[0] - ref).abs().max() <= 1e-5, pos_emb


def test_attention_kernels_agree_in_bf16_inference():
    """What evaluation runs under bf16 autocast (the explicit kernel on some CPU kinds, the fused one
    elsewhere): the same logits within bf16's rounding."""
    torch.manual_seed(0)
    model = randomise(small_vitlib(pos_emb="relative", attn_impl="sdpa")).eval()
    x = torch.randn(16, 3, 32, 32)
    explicit = small_vitlib(pos_emb="relative", attn_impl="explicit").eval()
    explicit.load_state_dict(model.state_dict())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref, out = model(x).float(), explicit(x).float()
    assert (out - ref).abs().max() <= 2e-2 * ref.abs().max()


@pytest.mark.parametrize("bf16", [False, True])
def test_attention_kernels_train_alike(bf16):
    """Forward and backward through each kernel: same loss and gradients (bf16 autocast: within
    bf16's rounding), and the attention maps the same whichever kernel the model was built with."""
    x, y = torch.randn(4, 3, 32, 32), torch.randint(7, (4,))
    grads, losses, maps = {}, {}, {}
    for kernel in ("sdpa", "explicit", "auto"):
        torch.manual_seed(1)
        model = randomise(small_vitlib(pos_emb="relative", attn_impl=kernel)).train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        losses[kernel] = loss.item()
        grads[kernel] = torch.cat([p.grad.flatten() for p in model.parameters()])
        with torch.no_grad():
            maps[kernel] = model.eval()(x, return_attention=True)[1]
    tol = 2e-2 if bf16 else 1e-5
    for kernel in ("explicit", "auto"):
        assert abs(losses[kernel] - losses["sdpa"]) <= tol * max(1.0, abs(losses["sdpa"]))
        scale = grads["sdpa"].abs().max()
        assert (grads[kernel] - grads["sdpa"]).abs().max() <= 4 * tol * scale, kernel
        assert all(torch.equal(a, b) for a, b in zip(maps[kernel], maps["sdpa"]))


def test_auto_attention_kernel_follows_the_measured_rule():
    from vitlib.models.vit import EXPLICIT_MAX_TOKENS, attention_kernel
    assert attention_kernel("auto", "cpu", True, True, 65) == "explicit"  # CPU bf16 training
    assert attention_kernel("auto", "cpu", True, True, EXPLICIT_MAX_TOKENS + 1) == "sdpa"  # long sequences
    assert attention_kernel("auto", "cpu", False, True, 65) == "sdpa"  # fp32
    # bf16 inference: by the CPU kind's measurement
    assert attention_kernel("auto", "cpu", True, False, 65, cpu="amx-bf16") == "sdpa"
    assert attention_kernel("auto", "cpu", True, False, 65, cpu="avx512-bf16") == "explicit"
    assert attention_kernel("auto", "cpu", True, False, EXPLICIT_MAX_TOKENS, cpu="avx512-bf16") == "explicit"
    assert attention_kernel("auto", "cpu", True, False, EXPLICIT_MAX_TOKENS + 1, cpu="avx512-bf16") == "sdpa"
    assert attention_kernel("auto", "cpu", False, False, 65, cpu="avx512-bf16") == "sdpa"  # fp32
    assert attention_kernel("auto", "cpu", True, False, 65, cpu="avx2") == "sdpa"  # not measured there
    assert attention_kernel("auto", "cuda", True, True, 65) == "sdpa"
    assert attention_kernel("auto", "cuda", True, False, 65, cpu="avx512-bf16") == "sdpa"
    assert attention_kernel("explicit", "cuda", False, False, 65) == "explicit"  # a named kernel is kept
    model = small_vitlib()
    assert model.attention_kernels("cpu", True, cpu="amx-bf16") == {"train": "explicit", "eval": "sdpa"}
    assert model.attention_kernels("cpu", True, cpu="avx512-bf16") == {"train": "explicit", "eval": "explicit"}
    assert model.attention_kernels("cpu", False) == {"train": "sdpa", "eval": "sdpa"}
    assert small_vitlib(attn_impl="explicit").attention_kernels("cuda", True) == {"train": "explicit",
                                                                                 "eval": "explicit"}
    with pytest.raises(ValueError, match="attn_impl='fast'.*allowed: 'auto', 'sdpa', 'explicit'"):
        small_vitlib(attn_impl="fast")


@pytest.mark.parametrize("training", [True, False])
def test_compiled_vit_has_one_graph(training):
    """torch.compile traces the kernel rule inside every attention layer: nothing in it may break
    the graph (reading the CPU's flags did, once per layer)."""
    model = small_vitlib().train(training)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.set_grad_enabled(training):
        explained = torch._dynamo.explain(model)(torch.randn(2, 3, 32, 32))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_features_do_not_collect_attention_maps():
    model = small_vitlib(attn_impl="explicit")
    seen = []
    for block in model.blocks:
        block.register_forward_hook(lambda module, args, out: seen.append(out[1]))
    with torch.no_grad():
        model.forward_features(torch.randn(2, 3, 32, 32))
    assert seen == [None] * 3


def test_relative_attention_is_app_d4_written_out():
    """Each block: logits[i, j] = q_i . (k_j + r_{i - j}) / sqrt(d) over the token sequence (class
    token at 0), r the block's own table of 1-D offsets."""
    model = randomise(small_vitlib(pos_emb="relative", depth=2))
    attn, N, d = model.blocks[1].attn, 64, 16
    assert attn.rel_pos.table.shape == (2 * N + 1, d) and model.blocks[0].attn.rel_pos is not attn.rel_pos
    x = torch.randn(2, 1 + N, 48)
    q, k, v = attn.qkv(x).view(2, 1 + N, 3, 3, d).permute(2, 0, 3, 1, 4)  # (B, heads, T, d)
    r = attn.rel_pos.table
    logits = torch.empty(2, 3, 1 + N, 1 + N)
    for i in range(1 + N):
        for j in range(1 + N):
            key = k[:, :, j] + r[i - j + N]
            logits[:, :, i, j] = (q[:, :, i] * key).sum(-1) / d ** 0.5
    expected = attn.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(2, 1 + N, 48))
    with torch.no_grad():
        for explicit in (False, True):
            out, weights = attn(x, explicit)
            assert (out - expected).abs().max() <= 1e-5
        assert (weights - logits.softmax(-1)).abs().max() <= 1e-6


def test_relative_attention_follows_a_new_resolution_and_trains():
    model = randomise(small_vitlib(pos_emb="relative"))
    table = model.blocks[0].attn.rel_pos.table.clone()
    model.set_img_size(32)
    assert torch.equal(model.blocks[0].attn.rel_pos.table, table)
    model.set_img_size(64)  # 1 + 64 -> 1 + 256 tokens: 129 -> 513 offsets, the largest kept at the ends
    new = model.blocks[0].attn.rel_pos.table
    assert new.shape == (513, 16) and torch.equal(new[[0, -1]], table[[0, -1]])
    model.train()(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(b.attn.rel_pos.table.grad.abs().sum() > 0 for b in model.blocks)


@pytest.mark.parametrize("name,timm_name,paper", [
    ("vit_b16", "vit_base_patch16_224", 86e6), ("vit_l16", "vit_large_patch16_224", 307e6),
    ("vit_h14", "vit_huge_patch14_224", 632e6)])
def test_parameter_counts_equal_timm_and_table_1(name, timm_name, paper):
    with torch.device("meta"):
        ours = vitlib.count_params(vitlib.create_model(name, num_classes=1000, img_size=224))
        theirs = vitlib.count_params(timm.create_model(timm_name, pretrained=False, num_classes=1000))
    assert ours == theirs
    assert abs(ours - paper) / paper < 0.015


def test_initialisation_follows_the_official_code():
    model = vitlib.create_model("vit_s16", num_classes=10, img_size=64)
    assert torch.count_nonzero(model.cls_token) == 0 and torch.count_nonzero(model.head.weight) == 0
    assert abs(model.pos_embed.std().item() - 0.02) < 0.002
    assert model.blocks[0].mlp.fc1.bias.abs().max() < 1e-4  # N(0, 1e-6)
    qkv = model.blocks[0].attn.qkv.weight  # Xavier-uniform on each of q, k, v: bound sqrt(6 / (D + D))
    assert abs(qkv.abs().max().item() - (6 / (384 + 384)) ** 0.5) < 1e-3
    conv = model.patch_embed.proj.weight  # LeCun normal: std sqrt(1 / fan_in)
    assert abs(conv.std().item() - (1 / (3 * 16 * 16)) ** 0.5) < 0.003


def test_resize_to_same_grid_is_identity_and_32_to_64_keeps_class_token():
    grid = torch.randn(8, 8, 16)
    assert torch.equal(resize_grid(grid, (8, 8)), grid)
    assert torch.allclose(resize_grid(grid, (8, 8), "bicubic"), grid)
    model = randomise(small_vitlib())
    cls_pos, patch_pos = model.pos_embed[0, 0].clone(), model.position_embeddings().clone()
    model.set_img_size(32)
    assert torch.equal(model.position_embeddings(), patch_pos)
    model.set_img_size(64)
    assert model.grid_size == (16, 16) and model.pos_embed.shape == (1, 257, 48)
    assert torch.equal(model.pos_embed[0, 0], cls_pos)
    model(torch.randn(2, 3, 64, 64)).sum().backward()


def test_sincos_embeddings_are_the_standard_formula():
    emb = sincos_2d(4, 4, 16)  # D/4 = 4 frequencies 1 / 10000^(i/4)
    row, col, i = 2, 3, 1
    omega = 1 / 10000 ** (i / 4)
    assert torch.isclose(emb[row * 4 + col, i], torch.tensor(row * omega).sin().float())
    assert torch.isclose(emb[row * 4 + col, 8 + 4 + i], torch.tensor(col * omega).cos().float())


@pytest.mark.parametrize("name", vitlib.list_models())
def test_every_named_model_builds_and_trains_a_step(name):
    small = dict(depth=1) if name.startswith(("vit", "r50_vit", "r_vit", "c_vit")) else {}
    if name.startswith("bit"):  # the real widths and stems, one block per stage (shapes: test_resnet)
        small = dict(layers=(1, 1, 1, 1))
    if name.startswith("vit_"):  # the real widths, fewer layers; a small image of whole patches
        patch = int("".join(filter(str.isdigit, name)))
        size = patch * 2
    elif name.startswith(("r50_vit", "bit")):
        size = 64 if name.startswith("bit") else 32
    else:
        size = 32
    if name in ("vit_h2", "vit_h4", "vit_h8", "vit_l2", "vit_h14", "vit_h16", "vit_h32", "vit_l32", "vit_l16",
                "vit_l4", "vit_l8", "vit_l14"):
        small.update(embed_dim=64, num_heads=4, mlp_dim=128)  # the widths are checked by parameter counts
    model = vitlib.create_model(name, num_classes=5, img_size=size, **small)
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, 5)
    logits.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_bad_names_and_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'vit_z16'.*vit_b16"):
        vitlib.create_model("vit_z16")
    with pytest.raises(ValueError, match="img_size=30 is not divisible by the patch size 4"):
        vitlib.create_model("vit_s4", img_size=30)
    with pytest.raises(ValueError, match="pos_emb='rope'.*'learned'.*'sincos2d'"):
        vitlib.create_model("vit_s4", pos_emb="rope")
    with pytest.raises(ValueError, match="pool='cls'.*'token'.*'gap'"):
        vitlib.create_model("vit_s4", pool="cls")
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        vitlib.create_model("vit_s4", num_classes=0)
    with pytest.raises(ValueError, match="vit_s4.*unexpected keyword argument 'widht'"):
        vitlib.create_model("vit_s4", widht=3)
    model = vitlib.create_model("vit_ti4", num_classes=10, in_chans=1, depth=1)
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1, 32, 32\), got \(2, 3, 32, 32\)"):
        model(torch.randn(2, 3, 32, 32))


def test_count_flops_matches_the_closed_form():
    depth, dim, mlp, tokens = 2, 64, 128, 65
    model = vitlib.create_model("vit_ti4", num_classes=10, depth=depth, embed_dim=dim, num_heads=4, mlp_dim=mlp)
    per_block = 2 * tokens * (3 * dim * dim + dim * dim + 2 * dim * mlp) + 2 * 2 * tokens * tokens * dim
    embed = 2 * 64 * dim * 3 * 4 * 4
    head = 2 * dim * 10
    assert vitlib.count_flops(model, 32) == depth * per_block + embed + head


@pytest.mark.parametrize("name, overrides", [
    ("vit_ti4", dict(depth=4)), ("c_vit_ti4", dict(depth=3)), ("r_vit_ti4", dict(depth=3)),
    ("bit_r50x1", {}),  # ResNet stages: the first unit projects, the others are alike
])
def test_shapes_only_builds_and_cut_counts_equal_the_real_model(name, overrides):
    """`vitlib list-models` builds without weights (shapes_only) and counts with each stack of
    alike blocks cut to one: the same parameters and FLOPs as the real model counted whole."""
    size = 64 if name.startswith("bit") else 32
    real = vitlib.create_model(name, **overrides)
    with shapes_only():
        meta = vitlib.create_model(name, **overrides)
    assert all(p.is_meta for p in meta.parameters())
    assert vitlib.count_params(meta) == vitlib.count_params(real)
    assert vitlib.count_flops(meta, size, cut_repeats=True) == vitlib.count_flops(real, size)
    assert [type(m) for m in meta.modules()] == [type(m) for m in real.modules()]  # put back whole


class _ConvStack(torch.nn.Module):
    def __init__(self, widths, stride):
        super().__init__()
        self.blocks = torch.nn.Sequential(*[torch.nn.Conv2d(a, b, 3, stride, 1) for a, b in zip(widths, widths[1:])])

    def forward(self, x):
        return self.blocks(x)


@pytest.mark.parametrize("widths, stride", [
    ((4, 4, 4, 4, 4), 1),  # alike and shape-keeping: cut
    ((4, 4, 4, 4, 4), 2),  # alike, but each halves the map: the blocks cut off would cost less
    ((4, 8, 8, 16, 16), 1),  # not alike
])
def test_cut_counts_are_exact_or_not_cut(widths, stride):
    model = _ConvStack(widths, stride)
    full = vitlib.count_flops(model, 16)
    assert vitlib.count_flops(model, 16, cut_repeats=True) == full
    assert len(model.blocks) == 4 and not any(block._forward_hooks for block in model.blocks)
    if (widths, stride) == ((4, 4, 4, 4, 4), 1):
        assert full == 4 * 2 * 16 * 16 * 4 * 4 * 9


def test_conv_stem_vit_has_the_patch_4_grid_and_a_few_percent_more_flops():
    """c_vit_ti4: two stride-2 3x3 conv-BN-ReLU layers (3 -> 48 -> 96 channels) and the 1x1
    projection to D replace the 4 x 4 patch embedding: the same 8 x 8 grid, the same Transformer."""
    conv, plain = vitlib.create_model("c_vit_ti4", num_classes=10, depth=6), vitlib.create_model(
        "vit_ti4", num_classes=10, depth=6)
    assert conv.grid_size == plain.grid_size == (8, 8) and conv.patch_embed.reduction == 4
    stem = [m for m in conv.patch_embed.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in stem] == [
        (3, 48, (3, 3), (2, 2)), (48, 96, (3, 3), (2, 2))]
    assert conv.patch_embed.proj.kernel_size == (1, 1) and conv.patch_embed.proj.in_channels == 96
    stem_flops = 2 * (16 * 16 * 27 * 48 + 8 * 8 * 432 * 96 + 8 * 8 * 96 * 192)  # two 3x3 convs, the 1x1 projection
    embed_flops = 2 * 64 * 192 * 3 * 4 * 4  # 64 patches of 3 x 4 x 4 pixels projected to D
    assert vitlib.count_flops(conv, 32) - vitlib.count_flops(plain, 32) == stem_flops - embed_flops
    assert vitlib.count_flops(conv, 32) < 1.05 * vitlib.count_flops(plain, 32)
    with pytest.raises(ValueError, match="widths must be a non-empty list of positive integers"):
        vitlib.create_model("c_vit_ti4", stem_widths=())


def test_hybrid_official_npz_read_by_timm_and_vitlib(tmp_path):
    """R50+ViT-B/16 (§3.1): the ResNet stem travels in the official naming (`conv_root`,
    `block{i}/unit{j}/...`) too; timm's reader of the official checkpoints is the independent check."""
    source = randomise(vitlib.create_model("r50_vit_b16", num_classes=10, img_size=64, depth=1))
    to_official_npz(source, tmp_path / "R50+ViT-B_16.npz")
    ref = timm.create_model("vit_base_r50_s16_224", pretrained=False, num_classes=10, img_size=64, depth=1).eval()
    timm.models.vision_transformer._load_weights(ref, str(tmp_path / "R50+ViT-B_16.npz"))
    loaded = load_pretrained(vitlib.create_model("r50_vit_b16", num_classes=10, img_size=64, depth=1),
                             tmp_path / "R50+ViT-B_16.npz").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
        assert (ref(x) - source(x)).abs().max() <= 1e-5
