"""Fields the optimisers fit: NeuS (SDF MLP or dense SDF grid + colour), SJC voxel NeRF, the carved hull."""
