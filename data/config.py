"""Configuration of the data stage (the `data:` section of configs/*.yaml), with each key's allowed values."""
from dataclasses import dataclass

from .settings import check_fields, number


@dataclass
class DataConfig:
    size: int = number(256, low=16)  # Zero-1-to-3's input resolution
    # object's longer side / size: 200 of 256 px as Zero-1-to-3 was trained
    foreground_ratio: float = number(0.78125, above=0, high=1)
    rembg_model: str = "u2netp"  # rembg model, used only when the image has no usable alpha channel
    max_side: int = number(8192, low=16)  # larger images are downscaled first, with a note
    # Input camera of an --image input (a scene carries its own camera in transforms_train.json).
    # degrees above the object's equator; Zero-1-to-3 is sensitive to this, set it roughly
    elevation: float = number(0.0, low=-90, high=90)
    azimuth: float = 0.0  # degrees; only fixes where the output views sit in the world frame
    radius: float = number(2.0, above=0)  # Zero-1-to-3's training renders were at ~1.5-2.2 units
    fov_deg: float = number(49.1, above=0, below=180)  # horizontal field of view of Zero-1-to-3's renders


def check_data_config(cfg: DataConfig) -> None:
    """Refuse a bad `data.*` value with one line naming the key and its allowed values (InputError)."""
    check_fields(cfg, "data")
