"""Weight interchange for `VisionTransformer`: the official Google `.npz` checkpoints; timm,
torchvision and Hugging Face `transformers` state dicts; vitlib's own checkpoints. Nothing here
touches the network.

Every format is first translated to vitlib's (= timm's) parameter names; then position
embeddings are resized when the patch grid differs (§3.2), a head with another class count is
replaced by a zero-initialised one (App. B.1.1), and anything else that does not fit is an error
naming the first mismatching key and both shapes.
"""
from pathlib import Path

import numpy as np
import torch

from vitlib.fileio import load_checkpoint
from vitlib.models.posemb import resample_pos_embed


def _official_block(w, i, dim, prefix):
    """One `Transformer/encoderblock_{i}` of the official naming -> timm names."""
    p = f"{prefix}Transformer/encoderblock_{i}/"
    att = p + "MultiHeadDotProductAttention_1/"
    t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))
    qkv_w = [t(w[f"{att}{n}/kernel"]).reshape(dim, dim).T for n in ("query", "key", "value")]
    qkv_b = [t(w[f"{att}{n}/bias"]).reshape(dim) for n in ("query", "key", "value")]
    b = f"blocks.{i}."
    return {
        b + "norm1.weight": t(w[p + "LayerNorm_0/scale"]), b + "norm1.bias": t(w[p + "LayerNorm_0/bias"]),
        b + "attn.qkv.weight": torch.cat(qkv_w), b + "attn.qkv.bias": torch.cat(qkv_b),
        b + "attn.proj.weight": t(w[att + "out/kernel"]).reshape(dim, dim).T,  # (heads, hd, D) -> (D, D)
        b + "attn.proj.bias": t(w[att + "out/bias"]),
        b + "norm2.weight": t(w[p + "LayerNorm_2/scale"]), b + "norm2.bias": t(w[p + "LayerNorm_2/bias"]),
        b + "mlp.fc1.weight": t(w[p + "MlpBlock_3/Dense_0/kernel"]).T,
        b + "mlp.fc1.bias": t(w[p + "MlpBlock_3/Dense_0/bias"]),
        b + "mlp.fc2.weight": t(w[p + "MlpBlock_3/Dense_1/kernel"]).T,
        b + "mlp.fc2.bias": t(w[p + "MlpBlock_3/Dense_1/bias"]),
    }


# the hybrid's ResNet (vit_jax models_resnet.py) -> timm's ResNetV2 names, which vitlib's backbone uses
_RESNET_PARTS = {"conv1": "conv1", "conv2": "conv2", "conv3": "conv3", "gn1": "norm1", "gn2": "norm2",
                 "gn3": "norm3", "conv_proj": "downsample.conv", "gn_proj": "downsample.norm"}


def _official_backbone(w, prefix):
    """`conv_root`, `gn_root`, `block{i}/unit{j}/{conv,gn}{1,2,3,_proj}` -> patch_embed.backbone.*"""
    t = lambda k: torch.from_numpy(np.asarray(w[prefix + k], dtype=np.float32))
    base = "patch_embed.backbone."
    sd = {base + "stem.conv.weight": t("conv_root/kernel").permute(3, 2, 0, 1),
          base + "stem.norm.weight": t("gn_root/scale").reshape(-1),
          base + "stem.norm.bias": t("gn_root/bias").reshape(-1)}
    for key in w.files:
        parts = key[len(prefix):].split("/")
        if not key.startswith(prefix + "block") or len(parts) != 4:
            continue
        block, unit, layer, leaf = parts  # e.g. block2, unit3, gn_proj, scale
        name = f"{base}stages.{int(block[5:]) - 1}.blocks.{int(unit[4:]) - 1}.{_RESNET_PARTS[layer]}"
        value = t(key[len(prefix):])
        sd[f"{name}.weight" if leaf in ("kernel", "scale") else f"{name}.bias"] = (
            value.permute(3, 2, 0, 1) if leaf == "kernel" else value.reshape(-1))
    return sd


def from_official_npz(path):
    """Read a google-research/vision_transformer checkpoint (`embedding/kernel`, `cls`,
    `Transformer/posembed_input/pos_embedding`, `Transformer/encoderblock_{i}/...`, `head/kernel`)."""
    w = np.load(path)
    prefix = next((p for p in ("", "opt/target/", "params/") if f"{p}embedding/kernel" in w), None)
    if prefix is None:
        raise ValueError(f"{path}: not an official ViT checkpoint (no 'embedding/kernel' array)")
    t = lambda k: torch.from_numpy(np.asarray(w[prefix + k], dtype=np.float32))
    sd = {"patch_embed.proj.weight": t("embedding/kernel").permute(3, 2, 0, 1),  # HWIO -> OIHW
          "patch_embed.proj.bias": t("embedding/bias")}
    dim = sd["patch_embed.proj.bias"].numel()
    if prefix + "cls" in w:
        sd["cls_token"] = t("cls")
    if prefix + "Transformer/posembed_input/pos_embedding" in w:
        sd["pos_embed"] = t("Transformer/posembed_input/pos_embedding")
    if prefix + "conv_root/kernel" in w:  # a hybrid (R50+ViT): the ResNet stem's weights
        sd.update(_official_backbone(w, prefix))
    depth = len({k.split("/")[1] for k in w.files if k.startswith(prefix + "Transformer/encoderblock_")})
    for i in range(depth):
        sd.update(_official_block(w, i, dim, prefix))
    sd["norm.weight"], sd["norm.bias"] = t("Transformer/encoder_norm/scale"), t("Transformer/encoder_norm/bias")
    if prefix + "pre_logits/kernel" in w:
        sd["pre_logits.weight"], sd["pre_logits.bias"] = t("pre_logits/kernel").T, t("pre_logits/bias")
    if prefix + "head/kernel" in w:
        sd["head.weight"], sd["head.bias"] = t("head/kernel").T, t("head/bias")
    return sd


def to_official_npz(model, path):
    """Write a vitlib ViT in the official naming (the inverse of `from_official_npz`)."""
    sd = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    dim, heads = model.embed_dim, model.num_heads
    out = {"embedding/kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
           "embedding/bias": sd["patch_embed.proj.bias"],
           "Transformer/encoder_norm/scale": sd["norm.weight"], "Transformer/encoder_norm/bias": sd["norm.bias"],
           "head/kernel": sd["head.weight"].T, "head/bias": sd["head.bias"]}
    if "cls_token" in sd:
        out["cls"] = sd["cls_token"]
    if model.pos_emb == "learned":
        out["Transformer/posembed_input/pos_embedding"] = sd["pos_embed"]
    if "pre_logits.weight" in sd:
        out["pre_logits/kernel"], out["pre_logits/bias"] = sd["pre_logits.weight"].T, sd["pre_logits.bias"]
    if model.patch_embed.backbone is not None:  # the hybrid's ResNet, in vit_jax's names
        parts = {v: k for k, v in _RESNET_PARTS.items()}
        for key, value in sd.items():
            if not key.startswith("patch_embed.backbone."):
                continue
            module, leaf = key[len("patch_embed.backbone."):].rsplit(".", 1)
            if module.startswith("stem."):
                name = {"stem.conv": "conv_root", "stem.norm": "gn_root"}[module]
            else:  # stages.{i}.blocks.{j}.{layer}
                _, i, _, j, layer = module.split(".", 4)
                name = f"block{int(i) + 1}/unit{int(j) + 1}/{parts[layer]}"
            kind = ("kernel" if value.ndim == 4 else "scale") if leaf == "weight" else "bias"
            out[f"{name}/{kind}"] = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
    for i in range(len(model.blocks)):
        p, b = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        att = p + "MultiHeadDotProductAttention_1/"
        for j, n in enumerate(("query", "key", "value")):
            out[f"{att}{n}/kernel"] = sd[b + "attn.qkv.weight"][j * dim:(j + 1) * dim].T.reshape(dim, heads, -1)
            out[f"{att}{n}/bias"] = sd[b + "attn.qkv.bias"][j * dim:(j + 1) * dim].reshape(heads, -1)
        out[att + "out/kernel"] = sd[b + "attn.proj.weight"].T.reshape(heads, -1, dim)
        out[att + "out/bias"] = sd[b + "attn.proj.bias"]
        for src, dst in (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_2")):
            out[f"{p}{dst}/scale"], out[f"{p}{dst}/bias"] = sd[b + src + ".weight"], sd[b + src + ".bias"]
        for src, dst in (("fc1", "Dense_0"), ("fc2", "Dense_1")):
            out[f"{p}MlpBlock_3/{dst}/kernel"] = sd[f"{b}mlp.{src}.weight"].T
            out[f"{p}MlpBlock_3/{dst}/bias"] = sd[f"{b}mlp.{src}.bias"]
    np.savez(path, **out)


def from_torchvision(sd):
    """torchvision `VisionTransformer` names -> timm names."""
    out = {"patch_embed.proj.weight": sd["conv_proj.weight"], "patch_embed.proj.bias": sd["conv_proj.bias"],
           "cls_token": sd["class_token"], "pos_embed": sd["encoder.pos_embedding"],
           "norm.weight": sd["encoder.ln.weight"], "norm.bias": sd["encoder.ln.bias"]}
    layer_ids = sorted({int(k.split(".")[2].rsplit("_", 1)[1]) for k in sd if k.startswith("encoder.layers.")})
    names = {"ln_1.": "norm1.", "ln_2.": "norm2.", "self_attention.in_proj_": "attn.qkv.",
             "self_attention.out_proj.": "attn.proj.", "mlp.0.": "mlp.fc1.", "mlp.3.": "mlp.fc2.",
             "mlp.linear_1.": "mlp.fc1.", "mlp.linear_2.": "mlp.fc2."}
    for i in layer_ids:
        src = f"encoder.layers.encoder_layer_{i}."
        for key, value in sd.items():
            if key.startswith(src):
                rest = key[len(src):]
                for old, new in names.items():
                    if rest.startswith(old):
                        rest = new + rest[len(old):]
                        break
                out[f"blocks.{i}.{rest}"] = value
    for src, dst in (("heads.pre_logits", "pre_logits"), ("heads.head", "head")):
        if f"{src}.weight" in sd:
            out[f"{dst}.weight"], out[f"{dst}.bias"] = sd[f"{src}.weight"], sd[f"{src}.bias"]
    return out


# transformers' ViT names inside a layer -> timm's: the 4.x names (those of the checkpoints on the
# Hugging Face Hub) and the 5.x ones; query, key and value are stacked into one qkv projection
_HF_QKV = (("attention.attention.query", "attention.attention.key", "attention.attention.value"),
           ("attention.q_proj", "attention.k_proj", "attention.v_proj"))
_HF_NAMES = {"layernorm_before.": "norm1.", "layernorm_after.": "norm2.", "attention.output.dense.": "attn.proj.",
             "attention.o_proj.": "attn.proj.", "intermediate.dense.": "mlp.fc1.", "output.dense.": "mlp.fc2.",
             "mlp.fc1.": "mlp.fc1.", "mlp.fc2.": "mlp.fc2."}


def from_transformers(sd):
    """Hugging Face `transformers` ViT names (`ViTForImageClassification`, or `ViTModel` without the
    `vit.` prefix; 4.x and 5.x layer names) -> timm names."""
    sd = {k.removeprefix("vit."): v for k, v in sd.items()}
    out = {"cls_token": sd["embeddings.cls_token"], "pos_embed": sd["embeddings.position_embeddings"],
           "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
           "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
           "norm.weight": sd["layernorm.weight"], "norm.bias": sd["layernorm.bias"]}
    prefix = "encoder.layer." if any(k.startswith("encoder.layer.") for k in sd) else "layers."
    layer_ids = sorted({int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)})
    for i in layer_ids:
        src = f"{prefix}{i}."
        qkv = next(names for names in _HF_QKV if f"{src}{names[0]}.weight" in sd)
        for part in ("weight", "bias"):
            out[f"blocks.{i}.attn.qkv.{part}"] = torch.cat([sd[f"{src}{n}.{part}"] for n in qkv])
        for key, value in sd.items():
            rest = key[len(src):] if key.startswith(src) else ""
            old = next((o for o in _HF_NAMES if rest.startswith(o)), None)
            if old:
                out[f"blocks.{i}.{_HF_NAMES[old]}{rest[len(old):]}"] = value
    if "classifier.weight" in sd:
        out["head.weight"], out["head.bias"] = sd["classifier.weight"], sd["classifier.bias"]
    return out


def read_state_dict(path):
    """Any supported file -> a state dict in vitlib's names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.suffix == ".npz":
        return from_official_npz(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        sd = load_file(str(path))
    elif path.suffix in (".pth", ".pt", ".bin"):
        sd = load_checkpoint(path)  # tensors and plain values only: no code runs from a weights file
    else:
        raise ValueError(f"{path}: unknown weights format {path.suffix!r}; "
                         "allowed: .npz, .pth, .pt, .bin, .safetensors")
    for key in ("model", "state_dict", "model_state_dict"):  # a training checkpoint
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    sd = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in sd.items()}
    if "conv_proj.weight" in sd:
        return from_torchvision(sd)
    if any(k.startswith(("vit.embeddings.", "embeddings.patch_embeddings.")) for k in sd):
        return from_transformers(sd)
    if "head.fc.weight" in sd:  # timm's newer pre-logits layout
        sd["head.weight"], sd["head.bias"] = sd.pop("head.fc.weight"), sd.pop("head.fc.bias")
    return sd


@torch.no_grad()
def load_pretrained(model, path, interpolation="bilinear"):
    """Load `path` into `model` (modified in place and returned).

    The position-embedding grid is resized if the checkpoint's differs; a head for another number
    of classes is left zero-initialised (fine-tuning); any other misfit raises ValueError.
    """
    sd = read_state_dict(path)
    own = model.state_dict()
    if "pos_embed" in sd and "pos_embed" in own and sd["pos_embed"].shape != own["pos_embed"].shape:
        try:
            sd["pos_embed"] = resample_pos_embed(sd["pos_embed"], model.num_prefix_tokens, model.grid_size,
                                                 interpolation)
        except ValueError as err:
            raise ValueError(f"{path}: 'pos_embed': {err}") from err
    if "head.weight" in sd and "head.weight" in own and sd["head.weight"].shape != own["head.weight"].shape:
        del sd["head.weight"], sd["head.bias"]
        model.reset_classifier(model.num_classes)
        own = model.state_dict()
    dropped_head = "head.weight" not in sd
    for key in own:
        if key not in sd and not (dropped_head and key.startswith("head.")):
            raise ValueError(f"{path}: the checkpoint has no {key!r} (model shape {tuple(own[key].shape)})")
    for key, value in sd.items():
        if key not in own:
            raise ValueError(f"{path}: the model has no parameter {key!r} (checkpoint shape {tuple(value.shape)})")
        if value.shape != own[key].shape:
            raise ValueError(f"{path}: {key!r} has shape {tuple(value.shape)} in the checkpoint "
                             f"but {tuple(own[key].shape)} in the model")
    model.load_state_dict(sd, strict=False)
    return model
