"""img2mesh: one photo of an object -> a clean 3D mesh (novel views generated, then a field fitted to them).

    import img2mesh
    result = img2mesh.run("photo.png", config="cpu", out="runs/photo")
    print(result.meshes["glb"])
"""
__version__ = "0.1.0"

from .api import export_run, load_model, reconstruct_views, run  # noqa: E402
from .batch import run_batch  # noqa: E402
from .config import Config, load_config  # noqa: E402
from .pipeline import RunResult  # noqa: E402

__all__ = ["run", "reconstruct_views", "export_run", "run_batch", "load_model", "load_config", "Config", "RunResult",
           "__version__"]
