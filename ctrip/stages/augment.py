"""Training augmentations in plain torch (torchvision cannot be imported here): for localizers,
random resized crop, rotation and scaling composed into one affine warp per image (the paper's),
or a rotation and translation that keep every size in the image; for ECGs, a random circular
time shift per record."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def augment_images(
    x: torch.Tensor,
    crop_scale: Sequence[float] = (0.7, 1.0),
    crop_ratio: Sequence[float] = (0.75, 1.3333),
    rotation_deg: float = 10.0,
    scale: Sequence[float] = (0.9, 1.1),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Warp each image of (B, C, H, W) independently; all C slices get the same warp.

    A crop covering a random `crop_scale` fraction of the area with aspect ratio in
    `crop_ratio` (log-uniform) is resized back to H x W, rotated by a uniform angle in
    +-rotation_deg and zoomed by a factor in `scale`. Outside the image is zero.
    """
    B = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(B, generator=generator, dtype=torch.float64)

    area = uniform(*crop_scale)
    ratio = uniform(math.log(crop_ratio[0]), math.log(crop_ratio[1])).exp()
    width = (area * ratio).sqrt().clamp(max=1.0)
    height = (area / ratio).sqrt().clamp(max=1.0)
    cx = uniform(-1.0, 1.0) * (1 - width)
    cy = uniform(-1.0, 1.0) * (1 - height)
    angle = uniform(-rotation_deg, rotation_deg) * math.pi / 180
    zoom = uniform(*scale)
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    theta = torch.stack(
        [
            torch.stack([width * cos, -height * sin, cx], dim=1),
            torch.stack([width * sin, height * cos, cy], dim=1),
        ],
        dim=1,
    ).to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotate_and_translate(
    x: torch.Tensor,
    rotation_deg: float = 10.0,
    translate: float = 0.0625,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Rotate each image of (B, C, H, W) by a uniform angle in +-rotation_deg about its centre
    and shift it by a uniform offset in +-translate of its side along each axis (all C slices
    alike; outside the image is zero). Unlike `augment_images` it keeps the scale, so a size
    read from the image (heart volume, LV mass) stays the size of the label; and it teaches a
    ViT the invariance to position that a CNN has by construction."""
    B = x.shape[0]

    def uniform(bound: float) -> torch.Tensor:
        return (2 * torch.rand(B, generator=generator, dtype=torch.float64) - 1) * bound

    angle = uniform(rotation_deg * math.pi / 180)
    # affine_grid's coordinates span [-1, 1]: a shift of a fraction f of the side is 2 f
    tx, ty = uniform(2 * translate), uniform(2 * translate)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack(
        [torch.stack([cos, -sin, tx], dim=1), torch.stack([sin, cos, ty], dim=1)], dim=1
    ).to(device=x.device, dtype=x.dtype)
    grid = sampling_grid(theta, x.shape[-2], x.shape[-1])
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def sampling_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`F.affine_grid(theta, (B, C, height, width), align_corners=False)` by broadcasting: the
    same (B, height, width, 2) grid, 3x faster on the CPU than its batched matrix product."""
    kw = {"device": theta.device, "dtype": theta.dtype}
    xs = (2 * torch.arange(width, **kw) + 1) / width - 1  # pixel centres in [-1, 1]
    ys = (2 * torch.arange(height, **kw) + 1) / height - 1
    # grid[b, h, w] = theta[b, :, 0] xs[w] + (theta[b, :, 1] ys[h] + theta[b, :, 2])
    rows = theta[:, None, :, 1] * ys[None, :, None] + theta[:, None, :, 2]  # (B, H, 2)
    return torch.addcmul(rows[:, :, None, :], theta[:, None, None, :, 0], xs[None, None, :, None])


def shift_ecgs(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate each record of (B, leads, T) in time by its own uniform random offset in [0, T),
    all leads together: what a record shows does not depend on where its window starts, and the
    shift moves the beats across the patch grid, which a patch embedding would otherwise learn."""
    B, leads, T = x.shape
    offset = torch.randint(0, T, (B, 1, 1), generator=generator).to(x.device)
    index = (torch.arange(T, device=x.device).view(1, 1, T) + offset) % T
    return torch.gather(x, 2, index.expand(B, leads, T))
