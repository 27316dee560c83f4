"""The settings that cut a run to seconds with the tests' tiny random model, one list for every app test:
4 views x 2 DDIM steps, a 10-step NeuS on 32 px views without the unseen-surface priors, a 48^3 mesh, a short
small turntable. A test adds the values its own assertions are about, after these."""
FAST = ["diffusion.num_views=4", "diffusion.steps=2", "recon.steps=10", "recon.image_size=32",
        "recon.rays_per_batch=256", "recon.checkpoint_every=0", "recon.init.hull_resolution=32",
        "recon.init.base_relax_steps=0", "recon.init.unseen_fill=false", "recon.neus.resolution=32",
        "recon.neus.coarse_resolution=16", "recon.neus.color_resolution=16", "export.mesh.resolution=48",
        "export.turntable_frames=4", "export.turntable_size=64",
        "recon.init.hull_tolerance=0.75"]  # random weights: the generated views agree on nothing
