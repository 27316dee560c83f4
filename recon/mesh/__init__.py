"""img2mesh.recon.mesh: the mesh tools, apart from the optimisers: marching cubes and clean-up, mesh I/O,
export (OBJ / GLB / PLY, views grid, turntable), the asset (decimation, UV atlas, baked texture, placement),
the mesh renderer and the mesh metrics. Imports only img2mesh.data (never the optimisers, which import it)."""
from .asset import Asset, make_asset, write_asset
from .config import MeshConfig
from .export import export_mesh, render_turntable, views_grid
from .io import load_mesh, normalize_mesh
from .meshing import evaluate_grid, evaluate_in_chunks, extract_mesh, grid_points, mesh_from_grid
from .metrics import mesh_metrics
from .raycast import Light, MeshRender, render_mesh, render_views
from .render_folder import render_mesh_to_folder
