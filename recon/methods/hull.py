"""Silhouette carving (recon.method=hull): the start's hull is the result; nothing trains."""
from __future__ import annotations

from ..fields.hull_field import HullField
from .base import Method


class Hull(Method):
    trains = False

    def build(self, cfg, start, device="cpu"):
        return HullField.from_hull(start.hull)

    def meta(self, field):
        return field.meta()

    def load(self, cfg, meta, state, device="cpu"):
        return HullField.from_meta(meta, state).to(device)

    def mesh(self, field, mesh_cfg):
        return field.mesh(mesh_cfg)

    def colors(self, field):
        return None  # carving finds shape only
