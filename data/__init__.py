"""img2mesh.data: images, cameras and the posed-views format every other stage shares.

Imports nothing from the other stages; they import it.
"""
from .cameras import Camera, camera_from_spherical, camera_layout, look_at, ring_cameras
from .errors import Img2MeshError, InputError, ResourceError, UnavailableError
from .views import View, Views, read_views, write_views

__all__ = [
    "Camera", "camera_from_spherical", "camera_layout", "look_at", "ring_cameras",
    "Img2MeshError", "InputError", "ResourceError", "UnavailableError",
    "View", "Views", "read_views", "write_views",
]
