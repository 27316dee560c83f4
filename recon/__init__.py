"""img2mesh.recon: NeuS / voxel-NeRF reconstruction from posed views, meshing, export, mesh rendering and metrics
(imports only img2mesh.data)."""
from .mesh_render import Light, MeshRender, load_mesh, normalize_mesh, render_mesh, render_mesh_to_folder, render_views
