"""img2mesh.recon: reconstruction from posed views (the start, the methods, the training loop) and, in
img2mesh.recon.mesh, the mesh tools (meshing, export, mesh rendering, metrics). Imports only img2mesh.data."""
from .start.hull import Bounds, HullResult, carve_hull, estimate_bounds
from .mesh import (Asset, Light, MeshConfig, MeshRender, evaluate_grid, evaluate_in_chunks, export_mesh, extract_mesh,
                   grid_points, load_mesh, make_asset, mesh_from_grid, mesh_metrics, normalize_mesh, render_mesh,
                   render_mesh_to_folder, render_turntable, render_views, views_grid, write_asset)
from .config import InitConfig, LossConfig, NeuSConfig, NeuSMLPConfig, ReconConfig, VoxelConfig
from .methods import METHODS
from .stage import ReconResult, field_colors, field_to_mesh, load_field, reconstruct, resize_views
from .start.prepare import Start, prepare_start
from .render.field_views import render_field
