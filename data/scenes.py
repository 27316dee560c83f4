"""Scenes: a single input image plus its camera, in Blender/NeRF format.

A scene folder holds ``train/r_0.png`` and ``transforms_train.json`` whose frame 0 is the input camera
(Zero-1-to-3's ``3drec/data/nerf_wild`` layout). ``--scene NAME`` looks in, in order:
``--scene-root``, ``$IMG2MESH_SCENES`` (``os.pathsep``-separated), ``./scenes``, and the user cache
``$XDG_CACHE_HOME/img2mesh/scenes`` (``~/.cache/img2mesh/scenes``). The ten public Zero-1-to-3 scenes are
downloaded into the cache on first use and checked against pinned sha256 sums.
"""
from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .cameras import Camera
from .errors import InputError, ResourceError
from .io import atomic_directory, sha256_bytes

log = logging.getLogger(__name__)

PUBLIC_SCENES_URL = "https://raw.githubusercontent.com/cvlab-columbia/zero123/main/3drec/data/nerf_wild"
SCENE_FILES = ("train/r_0.png", "transforms_train.json")
# sha256 of (train/r_0.png, transforms_train.json) for each public scene
PUBLIC_SCENES = {
    "alma": ("31ff5bdec1ed89f506c6d612f29d3bd23d9f1756cac948653ed201ebff511e44",
             "5b448d7e0cb391c13ad4eac4c8dd7f457f4f51cfcd7a3dd4f1b8acdb8c395263"),
    "extinguisher": ("fd3a67514500a3959891383c099991c3a184018912afb02ffad4ba9bf6424723",
                     "740f8a69fa9e106b6cc20489731dfe498d92a0db42ae3fa4634419a5b813eb58"),
    "lysol": ("6c95f148781ed718d2f1f694c91853346f73bccfebc790b5793ace4b29854406",
              "387ecd171593e1bbb916d19737c246073d0274ed620411d2d1885676c40967eb"),
    "minion": ("b3a219fc705fbf732b565d40c693b9dbd2b6f3ba57d6e0cb0738c910c620981c",
               "6667d165fb77422e6917c8741f85f01f1efafb8574fe5045925039258a4426f2"),
    "picasso": ("b455bd6332dd5064cd5b44cc6c96afb056e7484cecee706d02addadd09ca5319",
                "2aae05920b7a7cb9da072cc610be581d19f79aaa4310d7d8c621a67e3138a97b"),
    "pikachu": ("bb431e7ef3c8017d630a3a58f4ee28407667f38c49585efc923193f3b22076a1",
                "8c0950f2ca62224089637fdf4064bcf9f65e55f17e670a30918260156c381e7d"),
    "spyro": ("b7a20c624be2c028fffcac7ff3624e57a360b8298ec16fe003d6432feea5c3a3",
              "07eb8be6204a781cfc30fc6caaf016b6d008096ebc8ccca4aabca28f15fff3a5"),
    "sunflower": ("1ac1a61b64cd17c89efbaedcf12e4b59a03ff08c547f37478b1a4e059f5398a2",
                  "f143c064907a4e669bb30c490571628936aacb22e4bd954a8c56180f226b2134"),
    "taxi": ("8b617a0595c2ecf28c1a74182f55ea81b69414219cb43fff1bfded2e6acda4e2",
             "846de377a781544e5fc9679456bcd78596dffae85df421281ab68d9bf2a6d625"),
    "yellowduck": ("bc6f158265a5351cb5c8cf90460a676fb105e8817264645502742bf2e4964963",
                   "13d25de62942cc455d37eb5caf01c47323ef396ba9520192dd6ece156c4d1f44"),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Scene:
    name: str
    path: Path
    image_path: Path
    camera: Camera  # frame 0 of transforms_train.json, at the image's size
    source: str  # which search root it was found in


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "img2mesh"


def scene_roots(scene_root: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """The folders searched for scenes, first match wins, each with a label saying where it came from."""
    roots = []
    if scene_root:
        roots.append((Path(scene_root), "--scene-root"))
    for part in filter(None, os.environ.get("IMG2MESH_SCENES", "").split(os.pathsep)):
        roots.append((Path(part), "$IMG2MESH_SCENES"))
    roots.append((Path("scenes"), "./scenes"))
    roots.append((cache_dir() / "scenes", "cache"))
    return roots


def check_scene_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise InputError(f"invalid scene name {name!r}: use letters, digits, '_', '-' and '.', no paths")
    return name


def is_scene_dir(path: Path) -> bool:
    return all((path / f).is_file() for f in SCENE_FILES)


def read_scene(path: Path, name: str | None = None, source: str = "path") -> Scene:
    """Read a scene folder's input image path and frame-0 camera."""
    meta_path = path / "transforms_train.json"
    try:
        meta = json.loads(meta_path.read_text())
        fov = float(meta["camera_angle_x"])
        frame = meta["frames"][0]
        c2w = frame["transform_matrix"]
    except (OSError, json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as e:
        raise InputError(f"{meta_path} is not a valid scene transforms file ({type(e).__name__}: {e})") from None
    image_path = path / frame.get("file_path", "./train/r_0")
    if image_path.suffix == "":
        image_path = image_path.with_suffix(".png")
    try:
        with Image.open(image_path) as im:
            width, height = im.size
    except OSError as e:
        raise InputError(f"scene image {image_path} is not readable ({e})") from None
    return Scene(name or path.name, path, image_path, Camera(c2w, fov, width, height), source)


def offline() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("IMG2MESH_OFFLINE", "HF_HUB_OFFLINE"))


def download_public_scene(name: str, timeout: float = 30.0) -> Path:
    """Fetch a public Zero-1-to-3 scene into the cache, verifying pinned sha256 sums."""
    target = cache_dir() / "scenes" / name
    if offline():
        raise ResourceError(f"scene {name!r} is not on disk and downloads are off (offline mode): put the scene "
                            "folder under a directory named in IMG2MESH_SCENES or pass --scene-root")
    with atomic_directory(target) as tmp:
        for rel, expected in zip(SCENE_FILES, PUBLIC_SCENES[name]):
            url = f"{PUBLIC_SCENES_URL}/{name}/{rel}"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as r:
                    data = r.read()
            except (urllib.error.URLError, OSError) as e:
                raise ResourceError(f"could not download scene {name!r} ({e}); offline, put the scene folder "
                                    "under a directory named in IMG2MESH_SCENES or pass --scene-root") from None
            if sha256_bytes(data) != expected:
                raise ResourceError(f"downloaded {url} does not match its pinned sha256; refusing to use it")
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
    log.info("downloaded scene %s into %s", name, target)
    return target


def find_scene(name: str, scene_root: str | os.PathLike | None = None, download: bool = True) -> Scene:
    """Resolve ``--scene NAME`` through the search roots, downloading a known public scene if needed."""
    check_scene_name(name)
    for root, label in scene_roots(scene_root):
        path = root / name
        if is_scene_dir(path):
            return read_scene(path, name, label)
    if name in PUBLIC_SCENES and download:
        return read_scene(download_public_scene(name), name, "downloaded")
    searched = ", ".join(str(r) for r, _ in scene_roots(scene_root))
    raise InputError(f"scene {name!r} not found (searched {searched}); `img2mesh scenes` lists the available ones, "
                     "or set IMG2MESH_SCENES to a folder of scenes")


def list_scenes(scene_root: str | os.PathLike | None = None) -> list[tuple[str, str, Path | None]]:
    """(name, source, path) for every scene on disk, then public scenes that can still be downloaded."""
    found: dict[str, tuple[str, Path | None]] = {}
    for root, label in scene_roots(scene_root):
        if root.is_dir():
            for path in sorted(root.iterdir()):
                if path.name not in found and is_scene_dir(path):
                    found[path.name] = (label, path)
    for name in PUBLIC_SCENES:
        found.setdefault(name, ("downloadable", None))
    return [(name, label, path) for name, (label, path) in found.items()]
