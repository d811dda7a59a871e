"""MLIC++ attention contexts and the checkerboard: local (masked window attention over the
anchors), global intra-slice and global inter-slice (linear attention), as the official code
computes them, keeping its channel orderings so released weights give the same numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MASKED = -100.0  # the official additive attention mask for pairs that are not both anchors


def anchor_mask(height: int, width: int, device: torch.device) -> Tensor:
    """(1, 1, H, W) bool: anchors (coded first) where row + col is odd."""
    rows = torch.arange(height, device=device)[:, None]
    cols = torch.arange(width, device=device)[None, :]
    return ((rows + cols) % 2 == 1)[None, None]


def squeeze(x: Tensor, anchor: bool) -> Tensor:
    """(B, C, H, W) -> (B, C, H, W/2): the anchors (or non-anchors) of every row (W even),
    in raster order; strided copies, so no host sync on a GPU."""
    b, c, h, w = x.shape
    first = 1 if anchor else 0  # column of the first one on even rows
    out = x.new_empty(b, c, h, w // 2)
    out[:, :, 0::2] = x[:, :, 0::2, first::2]
    out[:, :, 1::2] = x[:, :, 1::2, 1 - first :: 2]
    return out


def unsqueeze(x: Tensor, anchor: bool) -> Tensor:
    """Inverse of `squeeze`, zeros elsewhere."""
    b, c, h, half = x.shape
    first = 1 if anchor else 0
    out = x.new_zeros(b, c, h, half * 2)
    out[:, :, 0::2, first::2] = x[:, :, 0::2]
    out[:, :, 1::2, 1 - first :: 2] = x[:, :, 1::2]
    return out


def keep(x: Tensor, mask: Tensor) -> Tensor:
    """x on the mask, zero elsewhere."""
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))


def window_mask(anchor: Tensor, window: int) -> Tensor:
    """(L, w*w, w*w) additive mask: 0 where query and key of a window are both anchors."""
    a = F.unfold(anchor.float(), window, padding=(window - 1) // 2)[0].T  # (L, w*w)
    both = a[:, :, None] * a[:, None, :]
    return torch.where(both == 1, 0.0, MASKED).contiguous()


def relative_position_index(window: int) -> Tensor:
    """(w*w, w*w) index into the (2w-1)^2 relative-position table (Swin's layout)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    rel = coords.flatten(1)[:, :, None] - coords.flatten(1)[:, None, :] + window - 1
    return rel[0] * (2 * window - 1) + rel[1]


class MLP(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim)
        self.drop = nn.Dropout(0.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class LocalContext(nn.Module):
    """Checkerboard window attention over a slice's decoded anchors -> 2 * dim features.

    Every latent attends within its w x w window (queries and keys both masked to anchors);
    the w*w attended vectors of a window are fused by a w x w convolution."""

    def __init__(self, dim: int, window_size: int = 5, num_heads: int = 2) -> None:
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv_proj = nn.Linear(dim, dim * 3)
        self.unfold = nn.Unfold(kernel_size=window_size, padding=(window_size - 1) // 2)
        self.relative_position_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_table, std=0.02)
        self.softmax = nn.Softmax(dim=-1)
        self.proj = nn.Linear(dim * 2, dim * 2)
        self.mlp = MLP(dim * 2, dim * 4, dim * 2)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim * 2)
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.fusion = nn.Conv2d(dim, dim * 2, kernel_size=window_size)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x: (B, C, H, W) anchors (zeros elsewhere); mask: `window_mask` of (H, W)."""
        b, c, h, w = x.shape
        n, ww = h * w, self.window_size**2
        tokens = self.norm1(x.flatten(2).transpose(1, 2))
        qkv = self.qkv_proj(tokens).transpose(1, 2).contiguous().view(b, 3 * c, h, w)
        windows = self.unfold(qkv).transpose(1, 2).reshape(b, n, 3, c, ww)
        # channel c = d * heads + head (the official split): (B, L, heads, w*w, head_dim)
        q, k, v = (
            windows[:, :, i].reshape(b, n, self.head_dim, self.num_heads, ww).permute(0, 1, 3, 4, 2)
            for i in range(3)
        )
        bias = self.relative_position_table[self.relative_position_index.view(-1)]
        bias = bias.view(ww, ww, -1).permute(2, 0, 1).contiguous()
        attn = (q * self.scale) @ k.transpose(-2, -1) + bias[None, None] + mask[None, :, None]
        out = self.softmax(attn) @ v  # (B, L, heads, w*w, head_dim), regrouped head-major
        out = out.transpose(2, 3).reshape(b * n, self.window_size, self.window_size, c)
        out = self.proj(self.fusion(out.permute(0, 3, 1, 2)).reshape(b, n, 2 * c))
        out = out + self.mlp(self.norm2(out))
        return out.transpose(1, 2).reshape(b, 2 * c, h, w)


def _projection(dim: int) -> nn.Sequential:
    """1x1 then depth-wise 3x3: the keys/queries/values maps."""
    return nn.Sequential(nn.Conv2d(dim, dim, 1), nn.Conv2d(dim, dim, 3, padding=1, groups=dim))


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_dim, hidden, 1),
        nn.GELU(),
        nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
        nn.GELU(),
        nn.Conv2d(hidden, out_dim, 1),
    )


def linear_attention(
    queries: Tensor, keys: Tensor, values: Tensor, heads: int, spread=None
) -> Tensor:
    """Efficient attention per head: keys soft-maxed over positions, queries over channels;
    (B, C, L) inputs, cost linear in L. `spread` maps the soft-maxed (B, d, L) terms back
    onto the full latent grid before the products (the intra-slice context), as the
    official code does, so the sums run in the same order."""
    c = queries.shape[1]
    d = c // heads
    out = []
    for i in range(heads):  # per head, as the official loop (same summation order)
        part = slice(i * d, (i + 1) * d)
        k, q, v = keys[:, part].softmax(2), queries[:, part].softmax(1), values[:, part]
        if spread is not None:
            k, q, v = spread(k, "anchor"), spread(q, "nonanchor"), spread(v, "anchor")
        out.append((k @ v.transpose(1, 2)).transpose(1, 2) @ q)
    return torch.cat(out, dim=1)


class LinearGlobalInterContext(nn.Module):
    """Global inter-slice context: linear self-attention over all decoded slices."""

    def __init__(self, dim: int, out_dim: int, num_heads: int) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"{dim} channels do not split into {num_heads} attention heads")
        self.dim, self.num_heads = dim, num_heads
        self.keys, self.queries, self.values = _projection(dim), _projection(dim), _projection(dim)
        wide = out_dim * 3 // 2
        self.reprojection = nn.Conv2d(dim, wide, 5, padding=2)
        self.mlp = _mlp(wide, out_dim * 2, out_dim)
        self.skip = nn.Conv2d(wide, out_dim, 1)

    def forward(self, decoded: Tensor) -> Tensor:
        b, c, h, w = decoded.shape
        q, k, v = (f(decoded).reshape(b, c, h * w) for f in (self.queries, self.keys, self.values))
        attention = self.reprojection(linear_attention(q, k, v, self.num_heads).view(b, c, h, w))
        return self.skip(attention) + self.mlp(attention)


class LinearGlobalIntraContext(nn.Module):
    """Global intra-slice context: the previous slice's non-anchors (queries) attend to its
    anchors (keys); the values are the current slice's decoded anchors."""

    def __init__(self, dim: int, num_heads: int = 2) -> None:
        super().__init__()
        self.dim, self.num_heads = dim, num_heads
        self.keys, self.queries, self.values = _projection(dim), _projection(dim), _projection(dim)
        self.reprojection = nn.Conv2d(dim, dim * 2, 5, padding=2)
        self.mlp = _mlp(dim * 2, dim * 4, dim * 2)

    def forward(self, previous: Tensor, anchors: Tensor, anchor: Tensor) -> Tensor:
        b, c, h, w = previous.shape
        nonanchor = ~anchor
        q = squeeze(self.queries(keep(previous, nonanchor)), False).reshape(b, c, -1)
        k = squeeze(self.keys(keep(previous, anchor)), True).reshape(b, c, -1)
        v = squeeze(self.values(anchors), True).reshape(b, c, -1)

        def spread(t: Tensor, where: str) -> Tensor:
            grid = unsqueeze(t.reshape(b, -1, h, w // 2), where == "anchor")
            return grid.reshape(b, -1, h * w)

        out = linear_attention(q, k, v, self.num_heads, spread).view(b, c, h, w)
        attention = self.reprojection(out)
        return attention + self.mlp(attention)
