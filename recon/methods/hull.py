"""Silhouette carving (recon.method=hull): the start's hull is the result; nothing trains."""
from __future__ import annotations

import numpy as np
import torch

from ..fields.hull_field import HullField
from .base import Method


class Hull(Method):
    trains = False

    def build(self, cfg, start, device="cpu"):
        hull = start.hull
        return HullField(torch.from_numpy(np.ascontiguousarray(hull.soft)), hull.bounds, hull.center)

    def meta(self, field):
        return field.meta()

    def load(self, settings, meta, state, device="cpu"):
        return HullField.from_meta(meta, state).to(device)

    def mesh(self, field, mesh_cfg):
        return field.mesh(mesh_cfg)

    def colors(self, field):
        return None  # carving finds shape only
