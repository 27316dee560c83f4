"""Configuration of the data stage (the `data:` section of configs/*.yaml)."""
from dataclasses import dataclass


@dataclass
class DataConfig:
    size: int = 256  # Zero-1-to-3's input resolution
    foreground_ratio: float = 0.78125  # object's longer side / size: 200 of 256 px as Zero-1-to-3 was trained
    rembg_model: str = "u2netp"  # rembg model, used only when the image has no usable alpha channel
    max_side: int = 8192  # larger images are downscaled first, with a note
    # Input camera of an --image input (a scene carries its own camera in transforms_train.json).
    elevation: float = 0.0  # degrees above the object's equator; Zero-1-to-3 is sensitive to this, set it roughly
    azimuth: float = 0.0  # degrees; only fixes where the output views sit in the world frame
    radius: float = 2.0  # Zero-1-to-3's training renders were at ~1.5-2.2 units
    fov_deg: float = 49.1  # horizontal field of view of Zero-1-to-3's renders
