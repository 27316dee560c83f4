"""img2mesh.recon: NeuS / voxel-NeRF reconstruction from posed views, meshing, export, mesh rendering and metrics
(imports only img2mesh.data)."""
