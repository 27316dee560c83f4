"""Marching cubes and clean-up settings (the `export.mesh:` section of configs/*.yaml). Decimation is an
export setting (`export.target_faces`): it happens after meshing, before UV unwrapping."""
from dataclasses import dataclass
from typing import Union

from img2mesh.data.settings import number


@dataclass
class MeshConfig:
    """Marching cubes and clean-up of the reconstructed field (meshing.py: extract_mesh)."""

    # grid nodes per side over the field's bounds (reference NeuS: 512 over [-0.6, 0.6]^3)
    resolution: int = number(256, low=8)
    # Iso-level: "auto" = the field's own rule (SDF: 0; density: the field's auto_threshold()), or a number.
    threshold: Union[str, float, int] = number("auto", also=("auto",))
    keep_components: int = number(1, low=0)  # largest connected components kept (0 = all): drops floaters
    smooth_iters: int = number(0, low=0)  # Taubin smoothing iterations (0 = off; volume-preserving, unlike Laplacian)
    chunk: int = number(65536, low=1)  # grid points per field query (lower it if meshing runs out of memory)

    def level(self, auto: float) -> float:
        """The iso-level: ``auto`` (the field's default) when threshold is "auto", else the number given."""
        if isinstance(self.threshold, str):
            if self.threshold.strip().lower() == "auto":
                return float(auto)
            try:
                return float(self.threshold)
            except ValueError:
                from img2mesh.data.errors import InputError

                raise InputError(f"export.mesh.threshold={self.threshold!r} must be 'auto' or a number") from None
        return float(self.threshold)
