"""img2mesh.diffusion: Zero-1-to-3 models and the ViewFusion multi-view sampler (imports only img2mesh.data)."""
