"""Position information for the ViT (§3.1, App. D.4): fixed 2-D sin-cos embeddings, a learned
relative-position bias, and the 2-D interpolation used to change resolution (§3.2)."""
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


class RelativePositionBias(nn.Module):
    """A learned bias per head and per 2-D offset between patches, added to the attention logits
    (App. D.4 "relative positional embeddings"); prefix (class) tokens get no bias."""

    def __init__(self, grid_size, num_heads, num_prefix_tokens=1):
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        gh, gw = grid_size
        self.table = nn.Parameter(torch.empty(2 * gh - 1, 2 * gw - 1, num_heads))  # (offsets, heads)
        nn.init.normal_(self.table, std=0.02)
        self._set_index(grid_size)

    def _set_index(self, grid_size):
        gh, gw = grid_size
        device = self.table.device
        rows, cols = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
        rows, cols = rows.flatten(), cols.flatten()
        d_row = rows[:, None] - rows[None] + gh - 1  # (N, N) offsets shifted to be >= 0
        d_col = cols[:, None] - cols[None] + gw - 1
        self.register_buffer("index", d_row * (2 * gw - 1) + d_col, persistent=False)
        self.grid_size = (gh, gw)

    def forward(self):  # -> (heads, T, T)
        heads = self.table.shape[-1]
        bias = self.table.reshape(-1, heads)[self.index].permute(2, 0, 1)  # (heads, N, N)
        n = self.num_prefix_tokens
        return F.pad(bias, (n, 0, n, 0)) if n else bias

    @torch.no_grad()
    def set_grid(self, grid_size, mode="bilinear"):
        gh, gw = grid_size
        self.table = nn.Parameter(resize_grid(self.table, (2 * gh - 1, 2 * gw - 1), mode))
        self._set_index(grid_size)
