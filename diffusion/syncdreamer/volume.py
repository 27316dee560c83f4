"""SyncDreamer's 3D part: the noisy-target encoder, the spatial volume and the per-view frustum volumes.

Module and parameter names are the original's (``spatial_volume.{target_encoder, spatial_volume_feats,
frustum_volume_feats}.*``) so a checkpoint's tensors load without renaming. The geometry copies the
original's conventions, odd ones included (docs/reference.md, SyncDreamer model):
- voxel centres: ``linspace(-L, L, V)`` on each axis, a meshgrid in 'ij' order whose axes are (z, y, x);
- projection: ``diag(r, r, 1) @ K @ [R|t]`` with r = feature size / image size, depth clamped at 1e-4, pixel
  coordinate u maps to ``u / ((S - 1) / 2) - 1`` for ``grid_sample(align_corners=True)``: pixel i sits at
  coordinate i while K's principal point is S/2, a half-pixel shift against the usual centre convention;
- bilinear sampling with zeros outside the image or the volume;
- frustum depths: ``linspace(0, 1, D)`` between camera distance -/+ frustum half-length.
Every function runs the same operations in the same order as the original, so float32 results match.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

GROUPS = 8  # every GroupNorm of the volume networks and depth attention has 8 groups
DEPTH_EPS = 1e-4  # projected depths below this are clamped to it before the perspective divide


# -- geometry ---------------------------------------------------------------------------------------------
def voxel_centres(size: int, half_length: float, device=None) -> torch.Tensor:
    """[3, V, V, V] world (x, y, z) of each voxel; axis 1 runs along z, axis 2 along y, axis 3 along x."""
    axis = torch.linspace(-half_length, half_length, size, dtype=torch.float32, device=device)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)  # [V, V, V, 3] as (z, y, x)
    xyz = grid.reshape(1, size ** 3, 3)[:, :, (2, 1, 0)]  # -> (x, y, z)
    return xyz.view(size, size, size, 3).permute(3, 0, 1, 2)


def projection_matrices(ratio: float, Ks: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
    """[B, 4, 4]: diag(ratio, ratio, 1) @ K [B, 3, 3] @ pose [B, 3, 4] with a (0, 0, 0, 1) last row."""
    scale = torch.diag(torch.tensor([ratio, ratio, 1.0], dtype=torch.float32, device=Ks.device))
    proj = scale[None] @ Ks @ poses
    last = torch.zeros(proj.shape[0], 1, 4, dtype=torch.float32, device=proj.device)
    last[:, :, 3] = 1.0
    return torch.cat([proj, last], 1)


def project_to_grid(points: torch.Tensor, proj: torch.Tensor, size: int) -> torch.Tensor:
    """World points [B, 3, n] through ``proj`` [B, 4, 4] -> grid_sample coordinates [B, n, 2] (x, y) of a
    ``size``-pixel feature map read with align_corners=True."""
    cam = proj[:, :3, :3] @ points + proj[:, :3, 3:]  # [B, 3, n]
    depth = cam[:, -1:]
    depth[depth < DEPTH_EPS] = DEPTH_EPS  # in place, as the original: cam's own depth row is clamped too
    uv = cam[:, :2] / depth
    uv[:, 0] = uv[:, 0] / ((size - 1) / 2) - 1
    uv[:, 1] = uv[:, 1] / ((size - 1) / 2) - 1
    return uv.permute(0, 2, 1)


def frustum_points(depths: int, size: int, image_size: int, poses: torch.Tensor, Ks: torch.Tensor,
                   near: torch.Tensor, far: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World points [B, 3, D, S, S] of each view's frustum grid (pixel (i, j) of a ``size``-pixel map, at
    ``depths`` depths from ``near`` to ``far`` [B, 1, S, S]) and those depths [B, 1, D, S, S]."""
    B = poses.shape[0]
    steps = torch.linspace(0, 1, steps=depths).to(near.device).to(near.dtype).view(1, depths, 1, 1)
    depth = (steps * (far - near) + near).view(B, 1, depths, size * size)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=poses.dtype, device=poses.device),
                            torch.arange(size, dtype=poses.dtype, device=poses.device), indexing="ij")
    pixels = torch.stack([xs, ys], 0).reshape(1, 2, size * size).expand(B, -1, -1)  # (u, v) = (column, row)
    pixels = torch.cat((pixels, torch.ones(B, 1, size * size, dtype=pixels.dtype, device=pixels.device)), dim=1)
    rays = pixels.unsqueeze(2) * depth  # [B, 3, D, S*S]
    inverse = torch.inverse(projection_matrices(size / image_size, Ks, poses))
    points = inverse[:, :3, :3] @ rays.view(B, 3, depths * size * size) + inverse[:, :3, 3:]
    return points.reshape(B, 3, depths, size, size), depth.view(B, 1, depths, size, size)


def unproject_view(features: torch.Tensor, centres: torch.Tensor, K: torch.Tensor, pose: torch.Tensor,
                   image_size: int) -> torch.Tensor:
    """Each voxel's bilinear sample of one view's feature map [B, c, S, S] (zeros where it projects outside):
    centres [B, 3, V, V, V] world points, K [B, 3, 3] at ``image_size`` px, pose [B, 3, 4] -> [B, c, V, V, V]."""
    B, c, _, S = features.shape
    V = centres.shape[-1]
    grid = project_to_grid(centres.view(B, 3, V ** 3), projection_matrices(S / image_size, K, pose), S)
    sampled = F.grid_sample(features, grid.view(B, V, V * V, 2).to(features.dtype), mode="bilinear",
                            padding_mode="zeros", align_corners=True)
    return sampled.view(B, c, V, V, V)


def sample_volume(volume: torch.Tensor, points: torch.Tensor, half_length: float) -> torch.Tensor:
    """Trilinear samples of ``volume`` [B, C, V, V, V] (spanning [-half_length, half_length]^3, axes z, y, x)
    at world points [B, 3, D, S, S] -> [B, C, D, S, S]; zeros outside the volume."""
    grid = (points / half_length).permute(0, 2, 3, 4, 1).to(volume.dtype)  # (x, y, z) in [-1, 1]
    return F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


# -- networks ---------------------------------------------------------------------------------------------
class Image2DResBlockWithTV(nn.Module):
    """x + conv(x + time + view): two GroupNorm-SiLU-conv3x3 layers."""

    def __init__(self, dim: int, time_dim: int, view_dim: int):
        super().__init__()
        self.time_embed = nn.Conv2d(time_dim, dim, 1, 1)
        self.view_embed = nn.Conv2d(view_dim, dim, 1, 1)
        self.conv = nn.Sequential(nn.GroupNorm(GROUPS, dim), nn.SiLU(True), nn.Conv2d(dim, dim, 3, 1, 1),
                                  nn.GroupNorm(GROUPS, dim), nn.SiLU(True), nn.Conv2d(dim, dim, 3, 1, 1))

    def forward(self, x, t, v):
        return x + self.conv(x + self.time_embed(t) + self.view_embed(v))


class NoisyTargetViewEncoder(nn.Module):
    """Noisy target latent [B, 4, h, w] + time [B, T] + view [B, 4] embeddings -> features [B, out, h, w]."""

    def __init__(self, time_dim: int, view_dim: int, run_dim: int = 16, output_dim: int = 16,
                 latent_channels: int = 4):
        super().__init__()
        self.init_conv = nn.Conv2d(latent_channels, run_dim, 3, 1, 1)
        self.out_conv0 = Image2DResBlockWithTV(run_dim, time_dim, view_dim)
        self.out_conv1 = Image2DResBlockWithTV(run_dim, time_dim, view_dim)
        self.out_conv2 = Image2DResBlockWithTV(run_dim, time_dim, view_dim)
        self.final_out = nn.Sequential(nn.GroupNorm(GROUPS, run_dim), nn.SiLU(True),
                                       nn.Conv2d(run_dim, output_dim, 3, 1, 1))

    def forward(self, x, t, v):
        t = t.view(*t.shape, 1, 1)
        v = v.view(*v.shape, 1, 1)
        x = self.init_conv(x)
        x = self.out_conv0(x, t, v)
        x = self.out_conv1(x, t, v)
        x = self.out_conv2(x, t, v)
        return self.final_out(x)


class SpatialTimeBlock(nn.Module):
    """conv3d(SiLU(GroupNorm(x + time))), optionally strided."""

    def __init__(self, x_dim: int, t_dim: int, out_dim: int, stride: int):
        super().__init__()
        self.t_conv = nn.Conv3d(t_dim, x_dim, 1, 1)
        self.bn = nn.GroupNorm(GROUPS, x_dim)
        self.silu = nn.SiLU(True)
        self.conv = nn.Conv3d(x_dim, out_dim, 3, stride=stride, padding=1)

    def forward(self, x, t):
        return self.conv(self.silu(self.bn(x + self.t_conv(t))))


class SpatialUpTimeBlock(nn.Module):
    """2x transposed conv3d of SiLU(GroupNorm(x + time))."""

    def __init__(self, x_dim: int, t_dim: int, out_dim: int):
        super().__init__()
        self.t_conv = nn.Conv3d(t_dim, x_dim, 1, 1)
        self.norm = nn.GroupNorm(GROUPS, x_dim)
        self.silu = nn.SiLU(True)
        self.conv = nn.ConvTranspose3d(x_dim, out_dim, kernel_size=3, padding=1, output_padding=1, stride=2)

    def forward(self, x, t):
        return self.conv(self.silu(self.norm(x + self.t_conv(t))))


class SpatialTime3DNet(nn.Module):
    """The spatial volume's 3D U-Net: [B, in, V, V, V] + time [B, T] -> [B, dims[0], V, V, V]."""

    def __init__(self, time_dim: int, input_dim: int, dims: tuple[int, int, int, int]):
        super().__init__()
        d0, d1, d2, d3 = dims
        self.init_conv = nn.Conv3d(input_dim, d0, 3, 1, 1)
        self.conv0 = SpatialTimeBlock(d0, time_dim, d0, stride=1)
        self.conv1 = SpatialTimeBlock(d0, time_dim, d1, stride=2)
        self.conv2_0 = SpatialTimeBlock(d1, time_dim, d1, stride=1)
        self.conv2_1 = SpatialTimeBlock(d1, time_dim, d1, stride=1)
        self.conv3 = SpatialTimeBlock(d1, time_dim, d2, stride=2)
        self.conv4_0 = SpatialTimeBlock(d2, time_dim, d2, stride=1)
        self.conv4_1 = SpatialTimeBlock(d2, time_dim, d2, stride=1)
        self.conv5 = SpatialTimeBlock(d2, time_dim, d3, stride=2)
        self.conv6_0 = SpatialTimeBlock(d3, time_dim, d3, stride=1)
        self.conv6_1 = SpatialTimeBlock(d3, time_dim, d3, stride=1)
        self.conv7 = SpatialUpTimeBlock(d3, time_dim, d2)
        self.conv8 = SpatialUpTimeBlock(d2, time_dim, d1)
        self.conv9 = SpatialUpTimeBlock(d1, time_dim, d0)

    def forward(self, x, t):
        t = t.view(*t.shape, 1, 1, 1)
        conv0 = self.conv0(self.init_conv(x), t)
        conv2 = self.conv2_1(self.conv2_0(self.conv1(conv0, t), t), t)
        conv4 = self.conv4_1(self.conv4_0(self.conv3(conv2, t), t), t)
        x = self.conv6_1(self.conv6_0(self.conv5(conv4, t), t), t)
        x = conv4 + self.conv7(x, t)
        x = conv2 + self.conv8(x, t)
        return conv0 + self.conv9(x, t)


class FrustumTVBlock(nn.Module):
    """conv3d(SiLU(GroupNorm(x + time + view))), optionally strided."""

    def __init__(self, x_dim: int, t_dim: int, v_dim: int, out_dim: int, stride: int):
        super().__init__()
        self.t_conv = nn.Conv3d(t_dim, x_dim, 1, 1)
        self.v_conv = nn.Conv3d(v_dim, x_dim, 1, 1)
        self.bn = nn.GroupNorm(GROUPS, x_dim)
        self.silu = nn.SiLU(True)
        self.conv = nn.Conv3d(x_dim, out_dim, 3, stride=stride, padding=1)

    def forward(self, x, t, v):
        return self.conv(self.silu(self.bn(x + self.t_conv(t) + self.v_conv(v))))


class FrustumTVUpBlock(nn.Module):
    """2x transposed conv3d of SiLU(GroupNorm(x + time + view))."""

    def __init__(self, x_dim: int, t_dim: int, v_dim: int, out_dim: int):
        super().__init__()
        self.t_conv = nn.Conv3d(t_dim, x_dim, 1, 1)
        self.v_conv = nn.Conv3d(v_dim, x_dim, 1, 1)
        self.norm = nn.GroupNorm(GROUPS, x_dim)
        self.silu = nn.SiLU(True)
        self.conv = nn.ConvTranspose3d(x_dim, out_dim, kernel_size=3, padding=1, output_padding=1, stride=2)

    def forward(self, x, t, v):
        return self.conv(self.silu(self.norm(x + self.t_conv(t) + self.v_conv(v))))


class FrustumTV3DNet(nn.Module):
    """A view's frustum volume [B, in, D, S, S] + time + view -> features at four widths, keyed by their
    width: {S: [B, dims[0], D, S, S], S/2: dims[1], S/4: dims[2], S/8: dims[3]}."""

    def __init__(self, in_dim: int, t_dim: int, v_dim: int, dims: tuple[int, int, int, int]):
        super().__init__()
        self.conv0 = nn.Conv3d(in_dim, dims[0], 3, 1, 1)
        self.conv1 = FrustumTVBlock(dims[0], t_dim, v_dim, dims[1], 2)
        self.conv2 = FrustumTVBlock(dims[1], t_dim, v_dim, dims[1], 1)
        self.conv3 = FrustumTVBlock(dims[1], t_dim, v_dim, dims[2], 2)
        self.conv4 = FrustumTVBlock(dims[2], t_dim, v_dim, dims[2], 1)
        self.conv5 = FrustumTVBlock(dims[2], t_dim, v_dim, dims[3], 2)
        self.conv6 = FrustumTVBlock(dims[3], t_dim, v_dim, dims[3], 1)
        self.up0 = FrustumTVUpBlock(dims[3], t_dim, v_dim, dims[2])
        self.up1 = FrustumTVUpBlock(dims[2], t_dim, v_dim, dims[1])
        self.up2 = FrustumTVUpBlock(dims[1], t_dim, v_dim, dims[0])

    def forward(self, x, t, v) -> dict[int, torch.Tensor]:
        t = t.view(*t.shape, 1, 1, 1)
        v = v.view(*v.shape, 1, 1, 1)
        w = x.shape[-1]
        x0 = self.conv0(x)
        x1 = self.conv2(self.conv1(x0, t, v), t, v)
        x2 = self.conv4(self.conv3(x1, t, v), t, v)
        x3 = self.conv6(self.conv5(x2, t, v), t, v)
        x2 = self.up0(x3, t, v) + x2
        x1 = self.up1(x2, t, v) + x1
        x0 = self.up2(x1, t, v) + x0
        return {w: x0, w // 2: x1, w // 4: x2, w // 8: x3}


class SpatialVolumeNet(nn.Module):
    """Builds the shared spatial volume from all noisy views and each target view's frustum features."""

    def __init__(self, time_dim: int, view_dim: int, view_num: int, encoder_dims: tuple[int, int],
                 spatial_dims: tuple[int, ...], frustum_dims: tuple[int, ...], image_size: int, volume_size: int,
                 frustum_depth: int, volume_half_length: float, frustum_half_length: float, camera_distance: float,
                 latent_channels: int = 4):
        super().__init__()
        run_dim, feature_dim = encoder_dims
        self.target_encoder = NoisyTargetViewEncoder(time_dim, view_dim, run_dim, feature_dim, latent_channels)
        self.spatial_volume_feats = SpatialTime3DNet(time_dim, feature_dim * view_num, tuple(spatial_dims))
        self.frustum_volume_feats = FrustumTV3DNet(spatial_dims[0], time_dim, view_dim, tuple(frustum_dims))
        self.image_size, self.volume_size, self.frustum_depth = image_size, volume_size, frustum_depth
        self.volume_half_length, self.frustum_half_length = volume_half_length, frustum_half_length
        self.camera_distance = camera_distance

    def spatial_volume(self, x: torch.Tensor, t_embed: torch.Tensor, v_embed: torch.Tensor, poses: torch.Tensor,
                       Ks: torch.Tensor) -> torch.Tensor:
        """Noisy latents x [B, N, 4, h, w], t_embed [B, T], v_embed [B, N, 4], poses [N, 3, 4], Ks [N, 3, 3]
        -> volume features [B, C, V, V, V]."""
        B, N, _, _, w = x.shape
        V = self.volume_size
        centres = voxel_centres(V, self.volume_half_length, x.device)[None].repeat(B, 1, 1, 1, 1)  # [B, 3, V, V, V]
        feats = []
        for i in range(N):
            f = self.target_encoder(x[:, i], t_embed, v_embed[:, i])  # [B, c, h, w]
            feats.append(unproject_view(f, centres, Ks[i:i + 1].repeat(B, 1, 1), poses[i:i + 1].repeat(B, 1, 1),
                                        self.image_size))
        volume = torch.stack(feats, 1).view(B, -1, V, V, V)  # views' channels side by side: [B, N*c, V, V, V]
        return self.spatial_volume_feats(volume, t_embed)

    def frustum_features(self, volume: torch.Tensor, t_embed: torch.Tensor, v_embed: torch.Tensor,
                         poses: torch.Tensor, Ks: torch.Tensor, targets: torch.Tensor) -> dict[int, torch.Tensor]:
        """volume [B, C, V, V, V], t_embed [B, T], v_embed [B, N, 4], targets [B, TN] view indices ->
        {width: [B*TN, c_k, D_k, S_k, S_k]} (rows instance-major)."""
        B, TN = targets.shape
        S, D, V = self.image_size // 8, self.frustum_depth, self.volume_size
        ones = torch.ones(B * TN, 1, S, S, dtype=poses.dtype, device=volume.device)  # geometry stays float32
        near = ones * self.camera_distance - self.frustum_half_length
        far = ones * self.camera_distance + self.frustum_half_length
        flat = targets.reshape(B * TN)
        points, _ = frustum_points(D, S, self.image_size, poses[flat], Ks[flat], near, far)
        volumes = volume.unsqueeze(1).repeat(1, TN, 1, 1, 1, 1).view(B * TN, -1, V, V, V)
        feats = sample_volume(volumes, points, self.volume_half_length)  # [B*TN, C, D, S, S]
        v = v_embed[torch.arange(B)[:, None], targets].view(B * TN, -1)
        t = t_embed.unsqueeze(1).repeat(1, TN, 1).view(B * TN, -1)
        return self.frustum_volume_feats(feats, t, v)
