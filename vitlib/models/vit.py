"""The Vision Transformer of Dosovitskiy et al. (ICLR 2021), §3.1, eq. 1-4.

    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos                 (1)
    z'_l = MSA(LN(z_{l-1})) + z_{l-1}                               (2)
    z_l = MLP(LN(z'_l)) + z'_l                                      (3)
    y = LN(z_L^0)                                                   (4)

Parameter names follow timm's `VisionTransformer` (patch_embed.proj, cls_token, pos_embed,
blocks.i.attn.qkv, ..., norm, head), so its state dicts load as they are; initialisation follows
the official JAX code (google-research/vision_transformer). The ablation options of App. D
(pooling, position-embedding type) are constructor arguments; everything else is one code path.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitlib.device import cpu_kind
from vitlib.models.posemb import POS_EMBS, POSITION_KINDS

POOLS = ("token", "gap")
ATTN_IMPLS = ("auto", "sdpa", "explicit")
# "auto" on a CPU, in bf16, with a backward pass to come: the explicit kernel up to this many tokens.
# Measured (bench/attention_kernels.py, results/bench/attention_kernels_*.csv): the fused CPU kernel's
# bf16 backward is 1.3-7x slower than matmul-softmax-matmul from 16 to 577 tokens; at 1,025 tokens
# the fused kernel wins again (it never stores the (B, heads, T, T) matrix).
EXPLICIT_MAX_TOKENS = 600
# In bf16 inference the kernels' order depends on the CPU kind (vitlib.device.cpu_kind): on an
# AVX512-BF16 CPU (no AMX) the explicit kernel is 1.04-1.36x faster from 16 to 401 tokens and
# 0.94-1.39x at 577 (three runs); on an AMX-BF16 CPU the fused kernel is as fast at 16-65 tokens and
# up to 3.4x faster beyond. The kinds where bf16 inference also takes the explicit kernel:
EXPLICIT_INFERENCE_KINDS = ("avx512-bf16",)
# This machine's kind, read once here: torch.compile traces the rule, and reading /proc/cpuinfo inside
# the trace (Dynamo traces through functools.cache) would break the graph at every attention layer.
THIS_CPU_KIND = cpu_kind()


def attention_kernel(impl, device_type, bf16, backward, tokens, cpu=None):
    """The attention kernel a call runs: `impl` unless it is "auto", which picks by measurement
    (bench/attention_kernels.py): the fused kernel (F.scaled_dot_product_attention) everywhere except
    a CPU computing bf16 with a backward pass to come over at most EXPLICIT_MAX_TOKENS tokens, where
    the explicit one (matmul, softmax, matmul) trains 2-7x faster, and bf16 inference over as many
    tokens on the CPU kinds of EXPLICIT_INFERENCE_KINDS. In fp32 the fused CPU kernel is as fast or
    faster; on CUDA it is flash / memory-efficient attention. `cpu`: the CPU kind (default: this
    machine's)."""
    if impl != "auto":
        return impl
    if device_type != "cpu" or not bf16:
        return "sdpa"
    if tokens > EXPLICIT_MAX_TOKENS:
        return "sdpa"
    return "explicit" if backward or (cpu or THIS_CPU_KIND) in EXPLICIT_INFERENCE_KINDS else "sdpa"


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed: {', '.join(map(repr, allowed))}")


def drop_path(x, p, training):
    """Stochastic depth (Huang et al. 2016): drop the whole residual branch per sample."""
    if p == 0.0 or not training:
        return x
    keep = torch.empty(x.shape[0], *([1] * (x.ndim - 1)), device=x.device, dtype=x.dtype).bernoulli_(1 - p)
    return x * keep / (1 - p)


class PatchEmbed(nn.Module):
    """Image -> (B, N, D) tokens: a conv with kernel = stride = P (the linear map E of eq. 1).

    With a `backbone` (the hybrid of §3.1) the conv runs on the CNN's feature map, usually with P = 1.
    """

    def __init__(self, img_size, patch_size, in_chans, embed_dim, backbone=None):
        super().__init__()
        self.backbone = backbone
        self.reduction = patch_size * (backbone.reduction if backbone is not None else 1)
        feat_chans = backbone.out_channels if backbone is not None else in_chans
        self.proj = nn.Conv2d(feat_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.in_chans = in_chans
        self.set_img_size(img_size)

    def set_img_size(self, img_size):
        if img_size % self.reduction:
            raise ValueError(f"img_size={img_size} is not divisible by the patch size "
                             f"{self.reduction}: choose a multiple of {self.reduction}")
        self.img_size = img_size
        self.grid_size = (img_size // self.reduction, img_size // self.reduction)

    def forward(self, x):  # (B, C, H, W)
        if x.ndim != 4 or x.shape[1] != self.in_chans or tuple(x.shape[2:]) != (self.img_size,) * 2:
            raise ValueError(f"expected images of shape (B, {self.in_chans}, {self.img_size}, "
                             f"{self.img_size}), got {tuple(x.shape)}")
        if self.backbone is not None:
            x = self.backbone(x)
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)


class Attention(nn.Module):
    """Multi-head self-attention (App. A, eq. 5-8) with one fused qkv projection.

    `kernel` is a speed choice, the output the same (tests/test_vit.py): "sdpa" (fused), "explicit"
    (softmax(q k^T / sqrt(d) + bias) v written out) or "auto" (attention_kernel, per call, from the
    input's device, the autocast state, whether a backward pass follows and the CPU kind). Returning
    the attention maps is an output choice: `return_attention=True` computes them explicitly whatever
    the kernel."""

    def __init__(self, dim, num_heads, attn_dropout=0.0, proj_dropout=0.0, rel_pos=None, kernel="auto"):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim={dim} must be divisible by num_heads={num_heads}")
        _check_choice("attn_impl", kernel, ATTN_IMPLS)
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout, self.proj_drop = attn_dropout, nn.Dropout(proj_dropout)
        self.rel_pos = rel_pos  # App. D.4's relative keys (posemb.RelativePositionKeys), or None
        self.kernel = kernel

    def forward(self, x, return_attention=False):  # x: (B, T, D)
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        bias = self.rel_pos(q) if self.rel_pos is not None else None  # (B, heads, T, T)
        p_drop = self.attn_dropout if self.training else 0.0
        kernel = attention_kernel(self.kernel, x.device.type, q.dtype == torch.bfloat16,
                                  torch.is_grad_enabled() and q.requires_grad, T)
        attn = None
        if return_attention or kernel == "explicit":
            logits = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)  # (B, heads, T, T)
            if bias is not None:
                logits = logits + bias
            probs = logits.softmax(dim=-1)
            out = F.dropout(probs, p_drop, self.training) @ v  # (B, heads, T, head_dim)
            attn = probs if return_attention else None
        else:
            mask = bias.to(q.dtype) if bias is not None else None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p_drop)
        out = out.transpose(1, 2).reshape(B, T, D)
        return self.proj_drop(self.proj(out)), attn


class Mlp(nn.Module):
    def __init__(self, dim, hidden, dropout=0.0):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-LN encoder block, eq. 2-3."""

    def __init__(self, dim, num_heads, mlp_dim, dropout=0.0, attn_dropout=0.0, drop_path=0.0, rel_pos=None,
                 attn_impl="auto"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, attn_dropout, dropout, rel_pos, attn_impl)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_dim, dropout)
        self.drop_path = drop_path

    def forward(self, x, return_attention=False):
        y, attn = self.attn(self.norm1(x), return_attention)
        x = x + drop_path(y, self.drop_path, self.training)
        x = x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)
        return x, attn


class VisionTransformer(nn.Module):
    """The ViT of §3.1; position embeddings by kind (posemb.POSITION_KINDS), pooling by `pool`."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=768,
                 depth=12, num_heads=12, mlp_dim=3072, pool="token", pos_emb="learned",
                 representation_size=None, dropout=0.0, attn_dropout=0.0, drop_path=0.0,
                 attn_impl="auto", backbone=None):
        super().__init__()
        _check_choice("pool", pool, POOLS)
        _check_choice("pos_emb", pos_emb, POS_EMBS)
        _check_choice("attn_impl", attn_impl, ATTN_IMPLS)
        for name, value in dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                                num_classes=num_classes, embed_dim=embed_dim, depth=depth,
                                num_heads=num_heads, mlp_dim=mlp_dim).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if pos_emb == "learned2d" and embed_dim % 2 or pos_emb == "sincos2d" and embed_dim % 4:
            raise ValueError(f"pos_emb={pos_emb!r} needs embed_dim divisible by "
                             f"{2 if pos_emb == 'learned2d' else 4}, got {embed_dim}")
        self.num_classes, self.embed_dim, self.num_heads = num_classes, embed_dim, num_heads
        self.pool, self.pos_emb, self.attn_impl = pool, pos_emb, attn_impl
        self.patch_size = patch_size
        self.num_prefix_tokens = 1 if pool == "token" else 0

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, backbone)
        gh, gw = self.patch_embed.grid_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if pool == "token" else None
        self.position = POSITION_KINDS[pos_emb]
        self.position.build(self, (gh, gw), embed_dim)
        self.pos_drop = nn.Dropout(dropout)

        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_dim, dropout, attn_dropout, drop_path * i / max(depth - 1, 1),
                  self.position.attention_keys(self, (gh, gw)), attn_impl)
            for i in range(depth))  # stochastic depth grows linearly with depth
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.pre_logits = nn.Linear(embed_dim, representation_size) if representation_size else None
        self.num_features = representation_size or embed_dim
        self.head = nn.Linear(self.num_features, num_classes)
        self.init_weights()

    @property
    def grid_size(self):
        return self.patch_embed.grid_size

    @torch.no_grad()
    def init_weights(self):
        """As the official JAX code: LeCun-normal patch conv, Xavier-uniform linears (q, k, v each
        on its own fan), MLP biases N(0, 1e-6), position embeddings N(0, 0.02), zero class token
        and zero head."""
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                fan_out = m.out_features // 3 if name.endswith("qkv") else m.out_features
                bound = math.sqrt(6.0 / (m.in_features + fan_out))
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.normal_(m.bias, std=1e-6) if ".mlp." in name else nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d) and name == "patch_embed.proj":
                std = math.sqrt(1.0 / (m.in_channels * m.kernel_size[0] * m.kernel_size[1])) / 0.87962566103423978
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)  # LeCun normal, cut at 2 std
                nn.init.zeros_(m.bias)
        for name in self.position.names:  # the learned position embeddings
            if hasattr(self, name):
                nn.init.normal_(getattr(self, name), std=0.02)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def attention_kernels(self, device_type, bf16, cpu=None):
        """{"train": kernel, "eval": kernel}: what the blocks' attention runs for this model's token
        count on `device_type` in bf16 or not, with a backward pass (training) and without (what a
        run records); `cpu`: the CPU kind (default: this machine's)."""
        tokens = self.grid_size[0] * self.grid_size[1] + self.num_prefix_tokens
        pick = lambda backward: "+".join(sorted({  # noqa: E731
            attention_kernel(block.attn.kernel, device_type, bf16, backward, tokens, cpu) for block in self.blocks}))
        return {"train": pick(True), "eval": pick(False)}

    def position_embeddings(self):
        """The patch positions' embeddings (gh * gw, D), class token excluded; None without any."""
        return self.position.patches(self)

    def forward_features(self, x, return_attention=False):  # x: (B, C, H, W)
        # (B, N, D) in the weights' dtype: under bf16 autocast the conv returns bf16, and the residual
        # stream stays fp32 for every pooling (as timm; the class token's torch.cat promotes it anyway)
        x = self.patch_embed(x).to(self.patch_embed.proj.weight.dtype)
        patch_pos = self.position_embeddings()
        if patch_pos is not None:
            x = x + patch_pos.to(x.dtype)
        if self.cls_token is not None:
            cls = self.cls_token.expand(x.shape[0], -1, -1)
            cls_pos = self.position.class_token(self)
            if cls_pos is not None:
                cls = cls + cls_pos
            x = torch.cat([cls, x], dim=1)  # (B, T, D), T = 1 + N
        x = self.pos_drop(x)
        attentions = []
        for block in self.blocks:
            x, attn = block(x, return_attention)
            attentions.append(attn)
        x = self.norm(x)
        return (x, attentions) if return_attention else x

    def forward_head(self, x, pre_logits=False):  # x: (B, T, D)
        x = x[:, 0] if self.pool == "token" else x[:, self.num_prefix_tokens:].mean(dim=1)
        if self.pre_logits is not None:
            x = torch.tanh(self.pre_logits(x))
        return x if pre_logits else self.head(x)

    def forward(self, x, return_attention=False):
        if return_attention:
            tokens, attentions = self.forward_features(x, return_attention=True)
            return self.forward_head(tokens), attentions
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes):
        """A new zero-initialised head (the fine-tuning recipe, App. B.1.1)."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes).to(self.head.weight.device)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @torch.no_grad()
    def set_img_size(self, img_size, mode="bilinear"):
        """Fine-tune at another resolution (§3.2): keep the patch size, 2-D-interpolate the
        position embeddings of the patch grid; the class token's embedding is kept apart."""
        old = self.grid_size
        self.patch_embed.set_img_size(img_size)
        new = self.grid_size
        if new == old:
            return
        self.position.resize(self, old, new, mode)
