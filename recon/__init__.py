"""img2mesh.recon: NeuS / voxel-NeRF reconstruction from posed views, meshing, export, mesh rendering and metrics
(imports only img2mesh.data)."""
from .hull import Bounds, HullResult, carve_hull, estimate_bounds
from .mesh import (Light, MeshConfig, MeshRender, evaluate_grid, evaluate_in_chunks, export_mesh, extract_mesh,
                   grid_points, load_mesh, mesh_from_grid, mesh_metrics, normalize_mesh, render_mesh,
                   render_mesh_to_folder, render_turntable, render_views, views_grid)
from .config import LossConfig, NeuSConfig, ReconConfig, VoxelConfig
from .reconstruct import ReconResult, field_to_mesh, load_field, reconstruct, resize_views
from .field_render import render_field
