"""Configuration of the recon and export stages (the `recon:` section of configs/*.yaml)."""
from dataclasses import dataclass, field


@dataclass
class MeshConfig:
    resolution: int = 256  # marching-cubes grid per side


@dataclass
class ReconConfig:
    method: str = "neus"  # neus | voxel | hull
    steps: int = 2000
    mesh: MeshConfig = field(default_factory=MeshConfig)
