"""img2mesh.recon: NeuS / voxel-NeRF reconstruction from posed views, meshing, export, mesh rendering and metrics
(imports only img2mesh.data)."""
from .mesh_render import Light, MeshRender, load_mesh, normalize_mesh, render_mesh, render_mesh_to_folder, render_views
from .hull import Bounds, HullResult, carve_hull, estimate_bounds
from .meshing import evaluate_grid, evaluate_in_chunks, extract_mesh, grid_points, mesh_from_grid
from .metrics import mesh_metrics
from .export import export_mesh, render_turntable, views_grid
from .config import LossConfig, MeshConfig, NeuSConfig, ReconConfig, VoxelConfig
from .reconstruct import ReconResult, field_to_mesh, load_field, reconstruct, resize_views
from .field_render import render_field
