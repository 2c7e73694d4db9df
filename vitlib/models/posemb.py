"""Position information for the ViT (§3.1, App. D.4): fixed 2-D sin-cos embeddings, a learned
relative attention, the 2-D interpolation used to change resolution (§3.2), and one class per
kind of position embedding (POSITION_KINDS) that VisionTransformer dispatches to."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def sincos_2d(grid_h, grid_w, dim, temperature=10000.0):
    """Fixed 2-D sin-cos embeddings (gh * gw, D): the first half encodes the row, the second the
    column, each as [sin, cos] over D/4 frequencies (as MAE / big_vision `posemb_sincos_2d`)."""
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(grid_h, dtype=torch.float64),
                                torch.arange(grid_w, dtype=torch.float64), indexing="ij")
    parts = []
    for coord in (rows.flatten(), cols.flatten()):
        angles = coord[:, None] * omega[None]  # (N, D/4)
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()  # (N, D)


def resize_grid(grid, new_size, mode="bilinear"):
    """Interpolate a (h, w, D) grid of embeddings to (h', w', D); the identity when the size is kept.

    Bilinear with align_corners=False, as timm's loader of the official checkpoints; "bicubic" too.
    """
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"mode={mode!r} is not supported; allowed: 'bilinear', 'bicubic'")
    if tuple(grid.shape[:2]) == tuple(new_size):
        return grid
    x = grid.permute(2, 0, 1)[None].float()  # (1, D, h, w)
    x = F.interpolate(x, size=tuple(new_size), mode=mode, align_corners=False)
    return x[0].permute(1, 2, 0).to(grid.dtype)


def resample_pos_embed(posemb, num_prefix_tokens, new_grid, mode="bilinear", old_grid=None):
    """A (1, n + h*w, D) table -> (1, n + h'*w', D): the grid part 2-D interpolated (§3.2) to
    `new_grid` = (h', w'), the n prefix (class) tokens' embeddings kept apart, as they are.

    old_grid: (h, w), default a square grid; ValueError when the table is not n + a square."""
    n = num_prefix_tokens
    if old_grid is None:
        side = int(round((posemb.shape[1] - n) ** 0.5))
        if side * side != posemb.shape[1] - n:
            raise ValueError(f"a position-embedding table of {posemb.shape[1]} tokens is not a square grid "
                             f"plus {n} prefix token(s)")
        old_grid = (side, side)
    grid = resize_grid(posemb[0, n:].reshape(*old_grid, -1), new_grid, mode)
    return torch.cat([posemb[:, :n], grid.reshape(1, -1, posemb.shape[-1])], dim=1)


class RelativePositionKeys(nn.Module):
    """App. D.4's relative attention, as the paper words it: "1-dimensional Relative Attention" in
    which every offset p_q - p_k between two tokens of the sequence has an embedding r, and an
    extra attention takes the block's own queries with these embeddings as keys; its logits
    q_i . r_{p_i - p_j} / sqrt(d) are added to the content logits before the softmax (as Shaw et
    al., 2018). One table (2T - 1, head_dim) per block, shared by its heads; the class token is the
    sequence's position 0, as in the 1-D learned embedding."""

    def __init__(self, num_tokens, head_dim):
        super().__init__()
        self.table = nn.Parameter(torch.empty(2 * num_tokens - 1, head_dim))  # offsets -(T-1) .. T-1
        nn.init.normal_(self.table, std=0.02)
        self._set_index(num_tokens)

    def _set_index(self, num_tokens):
        pos = torch.arange(num_tokens, device=self.table.device)
        self.register_buffer("index", pos[:, None] - pos[None] + num_tokens - 1, persistent=False)  # (T, T)

    def forward(self, q):  # q: (B, heads, T, d) -> (B, heads, T, T) logits
        logits = q @ self.table.to(q.dtype).T  # (B, heads, T, 2T - 1): every query against every offset
        B, heads, T, _ = logits.shape
        return logits.gather(-1, self.index.expand(B, heads, T, T)) * q.shape[-1] ** -0.5  # [i, j]: offset i - j

    @torch.no_grad()
    def set_num_tokens(self, num_tokens):
        """A new sequence length: the table linearly interpolated over the offsets, the largest
        offsets kept at the ends (1-D offsets have no 2-D grid to interpolate on)."""
        if 2 * num_tokens - 1 != self.table.shape[0]:
            table = F.interpolate(self.table.T[None].float(), size=2 * num_tokens - 1, mode="linear",
                                  align_corners=True)[0].T
            self.table = nn.Parameter(table.to(self.table.dtype))
        self._set_index(num_tokens)


# ---- position embeddings: one class per kind (App. D.4), each the only place that knows its kind -----
# The parameters stay on the model under timm's names (pos_embed, ...), so state dicts load as they
# are; a kind builds them, initialises them, gives the patches' and the class token's embeddings
# or the attention bias, and resizes them to a new patch grid (§3.2).
class NoPosition:
    """No position information: the model sees a bag of patches (App. D.4, "no positional embedding")."""
    names = ()

    def build(self, vit, grid, dim):
        pass

    def patches(self, vit):  # (N, D) added to the patch tokens, or None
        return None

    def class_token(self, vit):  # (1, 1, D) added to the class token, or None
        return None

    def attention_keys(self, vit, grid):  # a block's relative keys (RelativePositionKeys), or None
        return None

    def resize(self, vit, old, new, mode):
        pass


class Learned(NoPosition):
    """1-D learned, the paper's default: one table `pos_embed` (1, n + N, D), the class token's
    slot first, as the official code."""
    names = ("pos_embed",)

    def build(self, vit, grid, dim):
        vit.pos_embed = nn.Parameter(torch.empty(1, vit.num_prefix_tokens + grid[0] * grid[1], dim))

    def patches(self, vit):
        return vit.pos_embed[0, vit.num_prefix_tokens:]

    def class_token(self, vit):
        return vit.pos_embed[:, :1]

    def resize(self, vit, old, new, mode):
        vit.pos_embed = nn.Parameter(resample_pos_embed(vit.pos_embed, vit.num_prefix_tokens, new, mode, old))


class Learned2d(NoPosition):
    """2-D learned (App. D.4): row and column embeddings of D/2 each (`pos_embed_row` (h, D/2),
    `pos_embed_col` (w, D/2)), concatenated per patch; the class token has its own `cls_pos_embed`
    (1, 1, D) (none with GAP: an unused parameter would stop DDP at its second step)."""
    names = ("pos_embed_row", "pos_embed_col", "cls_pos_embed")

    def build(self, vit, grid, dim):
        vit.pos_embed_row = nn.Parameter(torch.empty(grid[0], dim // 2))
        vit.pos_embed_col = nn.Parameter(torch.empty(grid[1], dim // 2))
        if vit.num_prefix_tokens:
            vit.cls_pos_embed = nn.Parameter(torch.empty(1, 1, dim))

    def patches(self, vit):
        gh, gw = vit.grid_size
        row = vit.pos_embed_row[:, None].expand(gh, gw, -1)
        col = vit.pos_embed_col[None, :].expand(gh, gw, -1)
        return torch.cat([row, col], dim=-1).reshape(gh * gw, -1)

    def class_token(self, vit):
        return vit.cls_pos_embed if vit.num_prefix_tokens else None

    def resize(self, vit, old, new, mode):
        vit.pos_embed_row = nn.Parameter(resize_grid(vit.pos_embed_row[:, None], (new[0], 1), mode)[:, 0])
        vit.pos_embed_col = nn.Parameter(resize_grid(vit.pos_embed_col[None], (1, new[1]), mode)[0])


class SinCos2d(NoPosition):
    """Fixed 2-D sin-cos embeddings (a buffer, recomputed for a new grid); the class token gets none."""

    def build(self, vit, grid, dim):
        vit.register_buffer("pos_embed_fixed", sincos_2d(*grid, dim), persistent=False)

    def patches(self, vit):
        return vit.pos_embed_fixed

    def resize(self, vit, old, new, mode):
        vit.pos_embed_fixed = sincos_2d(*new, vit.embed_dim).to(vit.pos_embed_fixed)


class Relative(NoPosition):
    """Relative attention (App. D.4): each block's `attn.rel_pos`, a RelativePositionKeys."""

    def attention_keys(self, vit, grid):
        return RelativePositionKeys(vit.num_prefix_tokens + grid[0] * grid[1], vit.embed_dim // vit.num_heads)

    def resize(self, vit, old, new, mode):
        for block in vit.blocks:
            block.attn.rel_pos.set_num_tokens(vit.num_prefix_tokens + new[0] * new[1])


POSITION_KINDS = {"learned": Learned(), "learned2d": Learned2d(), "sincos2d": SinCos2d(), "relative": Relative(),
                  "none": NoPosition()}
POS_EMBS = tuple(POSITION_KINDS)
