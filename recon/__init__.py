"""img2mesh.recon: reconstruction from posed views (the start, the methods, the training loop) and, in
img2mesh.recon.mesh, the mesh tools (meshing, export, mesh rendering, metrics). Imports only img2mesh.data."""
from .config import InitConfig, LossConfig, NeuSConfig, NeuSMLPConfig, ReconConfig, VoxelConfig
from .field_file import load_field
from .field_outputs import field_colors, field_to_mesh, render_field
from .mesh import (Asset, Light, MeshConfig, MeshRender, evaluate_grid, evaluate_in_chunks, export_mesh, extract_mesh,
                   grid_points, load_mesh, make_asset, mesh_from_grid, mesh_metrics, normalize_mesh, render_mesh,
                   render_mesh_to_folder, render_turntable, render_views, views_grid, write_asset)
from .methods import METHODS
from .stage import ReconResult, reconstruct
from .start.hull import HullResult, carve_hull, estimate_bounds
from .start.prepare import Start, prepare_start
from .start.views import resize_views
