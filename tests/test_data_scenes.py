"""Scene resolution: search order, name safety, offline download error, listing."""
import shutil

import pytest

from img2mesh.data.errors import InputError, ResourceError
from img2mesh.data.scenes import find_scene, list_scenes


@pytest.fixture
def roots(tmp_path, shared, monkeypatch):
    """Two scene roots with the same scene name; cache in tmp; current dir has no ./scenes."""
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        shutil.copytree(shared / "scenes/nerf_wild/pikachu", root / "pikachu")
    monkeypatch.setenv("IMG2MESH_SCENES", str(b))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return a, b


def test_scene_root_first_then_env(roots):
    a, b = roots
    assert find_scene("pikachu", scene_root=a).path == a / "pikachu"
    scene = find_scene("pikachu")
    assert scene.path == b / "pikachu" and scene.source == "$IMG2MESH_SCENES"
    assert scene.camera.elevation == pytest.approx(20.0) and scene.camera.azimuth == pytest.approx(90.0)
    assert scene.camera.width == 800


def test_local_scenes_folder(roots, tmp_path):
    shutil.copytree(roots[0] / "pikachu", tmp_path / "scenes" / "mine")
    assert find_scene("mine").source == "./scenes"


@pytest.mark.parametrize("name", ["../x", "/etc", "a/b", "..", ".hidden"])
def test_escaping_names_refused(roots, name):
    with pytest.raises(InputError, match="invalid scene name"):
        find_scene(name)


def test_unknown_scene(roots):
    with pytest.raises(InputError, match="scene 'nosuch' not found.*IMG2MESH_SCENES"):
        find_scene("nosuch")


def test_public_scene_offline_names_the_env_var(roots, monkeypatch):
    monkeypatch.setenv("IMG2MESH_SCENES", "")
    with pytest.raises(ResourceError, match="IMG2MESH_SCENES"):
        find_scene("alma")


def test_listing(roots):
    rows = {name: (source, path) for name, source, path in list_scenes()}
    assert rows["pikachu"][0] == "$IMG2MESH_SCENES"
    assert rows["alma"] == ("downloadable", None)


@pytest.fixture
def scene_server(shared, tmp_path):
    """The public scenes served over loopback HTTP, standing in for the GitHub raw URL."""
    import functools
    import http.server
    import threading

    root = tmp_path / "www"
    shutil.copytree(shared / "scenes/nerf_wild", root)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_verifies_sha256(roots, scene_server, monkeypatch):
    import img2mesh.data.scenes as scenes

    root, url = scene_server
    monkeypatch.setenv("IMG2MESH_SCENES", "")
    monkeypatch.setenv("IMG2MESH_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(scenes, "PUBLIC_SCENES_URL", url)
    scene = find_scene("alma")
    assert scene.source == "downloaded" and scene.path == scenes.cache_dir() / "scenes" / "alma"
    assert find_scene("alma").source == "cache"  # second time from the cache
    (root / "taxi" / "transforms_train.json").write_text("{}")  # tampered upstream file
    with pytest.raises(ResourceError, match="does not match its pinned sha256"):
        find_scene("taxi")
    assert not (scenes.cache_dir() / "scenes" / "taxi").exists()  # nothing half-downloaded left behind


def test_download_failure_is_one_line(roots, monkeypatch):
    import img2mesh.data.scenes as scenes

    monkeypatch.setenv("IMG2MESH_SCENES", "")
    monkeypatch.setenv("IMG2MESH_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(scenes, "PUBLIC_SCENES_URL", "http://127.0.0.1:9/nothing")  # discard port: refused
    with pytest.raises(ResourceError, match="could not download scene 'alma'.*IMG2MESH_SCENES"):
        find_scene("alma")
