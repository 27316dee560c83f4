"""img2mesh: one photo of an object -> a clean 3D mesh, training-free."""
__version__ = "0.1.0"
