"""Rendering by rays: ray banks and batches, volume rendering (NeuS, voxel), the occupancy grid, renders of a
trained field from any camera."""
