"""One factory for every model of the study: `create_model(name, ...)` and `list_models()`.

ViT shapes come from Table 1 of the paper (B, L, H) and the official code's configs (Ti, S);
`vit_<size><patch>` is that shape with P x P patches, e.g. `vit_b16` = ViT-B/16 and `vit_s4` = ViT-S
with 4 x 4 patches for 32 x 32 images. Hybrids (§3.1) put a ResNet stem before the Transformer;
`c_vit_<size>4` a two-layer convolutional stem (Xiao et al. 2021) of the same stride 4.
"""
from vitlib.models.vit import VisionTransformer

# name: (depth, embed_dim D, mlp_dim, num_heads)       Table 1; Ti and S from the official configs
VIT_SHAPES = {
    "ti": (12, 192, 768, 3),
    "s": (12, 384, 1536, 6),
    "b": (12, 768, 3072, 12),
    "l": (24, 1024, 4096, 16),
    "h": (32, 1280, 5120, 16),
}
VIT_PATCHES = (2, 4, 8, 14, 16, 32)
SMALL_IMAGE_PATCH = 8  # patches up to this size default to 32 x 32 inputs, larger ones to 224 x 224


def _vit_builder(shape, patch):
    depth, dim, mlp, heads = VIT_SHAPES[shape]

    def build(num_classes=1000, img_size=None, in_chans=3, **overrides):
        args = dict(depth=depth, embed_dim=dim, mlp_dim=mlp, num_heads=heads, patch_size=patch,
                    img_size=img_size or (32 if patch <= SMALL_IMAGE_PATCH else 224))
        args.update(overrides)
        return VisionTransformer(num_classes=num_classes, in_chans=in_chans, **args)
    return build


def _hybrid_builder(shape, layers, stem, patch=1, default_img_size=224):
    """ResNet v2 stages (§3.1 "Hybrid Architecture"): R50 with stage 4 removed and stage 3 grown
    to 9 blocks (output stride 16) for `r50_vit_b16`; a two-stage, stride-4 stem for 32 x 32."""
    depth, dim, mlp, heads = VIT_SHAPES[shape]

    def build(num_classes=1000, img_size=None, in_chans=3, **overrides):
        from vitlib.models.resnet import resnetv2_backbone
        backbone = resnetv2_backbone(layers=layers, in_chans=in_chans, stem=stem)
        args = dict(depth=depth, embed_dim=dim, mlp_dim=mlp, num_heads=heads, patch_size=patch,
                    img_size=img_size or default_img_size)
        args.update(overrides)
        return VisionTransformer(num_classes=num_classes, in_chans=in_chans, backbone=backbone, **args)
    return build


def _conv_stem_builder(shape, stem_widths=(48, 96)):
    """The ViT of `shape` with a stride-4 convolutional stem (models/convstem.py) instead of 4 x 4
    patches: the same 8 x 8 token grid on 32 x 32 images."""
    depth, dim, mlp, heads = VIT_SHAPES[shape]

    def build(num_classes=1000, img_size=None, in_chans=3, stem_widths=stem_widths, **overrides):
        from vitlib.models.convstem import ConvStem
        args = dict(depth=depth, embed_dim=dim, mlp_dim=mlp, num_heads=heads, patch_size=1, img_size=img_size or 32)
        args.update(overrides)
        return VisionTransformer(num_classes=num_classes, in_chans=in_chans, backbone=ConvStem(in_chans, stem_widths),
                                 **args)
    return build


def _registry():
    models = {f"vit_{s}{p}": _vit_builder(s, p) for s in VIT_SHAPES for p in VIT_PATCHES}
    models["r50_vit_b16"] = _hybrid_builder("b", (3, 4, 9), "same")  # TF "same" padding, as the JAX code
    models["r_vit_ti4"] = _hybrid_builder("ti", (2, 2), "cifar", default_img_size=32)
    models["r_vit_s4"] = _hybrid_builder("s", (2, 2), "cifar", default_img_size=32)
    models["c_vit_ti4"] = _conv_stem_builder("ti")  # Xiao et al. 2021's convolutional stem, stride 4
    models["c_vit_s4"] = _conv_stem_builder("s")
    from vitlib.models.cifar_resnet import MODELS as CIFAR_RESNETS
    from vitlib.models.resnet import MODELS as BIT_RESNETS
    for name, build in {**BIT_RESNETS, **CIFAR_RESNETS}.items():  # convolutional nets take any image size
        models[name] = lambda num_classes, img_size, in_chans, _build=build, **kw: _build(
            num_classes=num_classes, in_chans=in_chans, **kw)
    return models


def list_models():
    """Every name `create_model` accepts, sorted."""
    return sorted(_registry())


def create_model(name, num_classes=1000, img_size=None, in_chans=3, **overrides):
    """Build a model by name; `overrides` set any constructor field (depth, embed_dim, num_heads,
    mlp_dim, patch_size, pool, pos_emb, dropout, attn_dropout, drop_path, representation_size,
    attn_impl for ViTs). Unknown names or fields raise ValueError saying what is allowed."""
    models = _registry()
    if name not in models:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(sorted(models))}")
    for key, value in dict(num_classes=num_classes, in_chans=in_chans).items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    try:
        model = models[name](num_classes=num_classes, img_size=img_size, in_chans=in_chans, **overrides)
    except TypeError as e:  # an override the constructor does not take
        raise ValueError(f"{name}: {e}") from None
    model.config = dict(name=name, num_classes=num_classes, img_size=img_size, in_chans=in_chans, **overrides)
    return model
