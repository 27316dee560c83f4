"""The reconstruction methods, by the name `recon.method` takes. Adding one: a file with a
:class:`~img2mesh.recon.methods.base.Method` subclass, and its entry here."""
from .base import Method
from .hull import Hull
from .neus import GridNeuS, MLPNeuS
from .voxel import Voxel

METHODS: dict[str, Method] = {"neus": GridNeuS(), "neus_mlp": MLPNeuS(), "voxel": Voxel(), "hull": Hull()}
