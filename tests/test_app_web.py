"""`img2mesh serve`: the web app with a tiny random Zero-1-to-3, driven by gradio_client and by headless Chromium.

Everything talks to 127.0.0.1 only: the server binds there, gradio's telemetry is off, and Chromium resolves no
other host.
"""
import io
import json
import os
import re
import shutil
import socket
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

import img2mesh
from img2mesh.cli import main
from img2mesh.data.errors import InputError
from img2mesh.data.progress import is_quiet, listen, progress, set_quiet
from img2mesh.data.scenes import find_scene
from img2mesh.web_jobs import Request, WebService, check_upload, obj_zip, safe_label

from fast import FAST
from servers import free_port, pikachu_photo, tiny_model

SCREENSHOT_ENV = "IMG2MESH_WEB_SCREENSHOT"  # also copy the browser test's screenshot here (docs/web.png)


def write_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory, shared) -> Path:
    """A photo without alpha: pikachu on a grey background, as JPEG (the cut-out comes from rembg)."""
    return pikachu_photo(tmp_path_factory.mktemp("photo") / "pika photo.jpg")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("zero123"))


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory, shared):
    from img2mesh.web import start

    quiet = is_quiet()
    set_quiet(True)
    srv = start(out=tmp_path_factory.mktemp("web") / "runs", port=free_port(), model=str(model_dir), preset="cpu",
                overrides=FAST, quiet=True)
    yield srv
    srv.close()
    set_quiet(quiet)


@pytest.fixture
def client(server, tmp_path):
    from gradio_client import Client

    return Client(server.url, download_files=str(tmp_path / "downloads"), verbose=False, analytics_enabled=False)


def run_dirs(server) -> list[Path]:
    return sorted(p.parent for p in Path(server.service.out).glob("*/*/run.json"))


# -- the progress hook --------------------------------------------------------------------------------------
def test_progress_listener_counts_quiet_bars_and_can_stop_the_work():
    heard = []
    quiet = is_quiet()
    try:
        set_quiet(True)  # a quiet bar counts nothing itself: the listener still hears every step
        with listen(lambda *event: heard.append(event)):
            bar = progress(range(2, 5), total=5, desc="recon neus", initial=2)
            assert [step for step in bar] == [2, 3, 4]
            bar.set_postfix(loss=1.0)
            bar.close()
        assert heard == [("recon neus", 2, 5), ("recon neus", 3, 5), ("recon neus", 4, 5), ("recon neus", 5, 5)]
        with listen(lambda *event: heard.append(event)):  # a bar counted by hand, and moved back
            bar = progress(total=4, desc="recon neus")
            bar.update(1)
            bar.update(2)
            bar.n = 1
            bar.refresh()
            bar.close()
        assert heard[4:] == [("recon neus", 0, 4), ("recon neus", 1, 4), ("recon neus", 3, 4), ("recon neus", 1, 4)]
        del heard[4:]
        for _ in progress(range(3), desc="outside"):  # no listener: nothing heard
            pass
        assert len(heard) == 4

        def stop(label, n, total):
            if n == 2:
                raise KeyboardInterrupt

        done = []
        with pytest.raises(KeyboardInterrupt), listen(stop):
            for i in progress(range(10), desc="work"):
                done.append(i)
        assert done == [0, 1]
    finally:
        set_quiet(quiet)


# -- request checks without a server ------------------------------------------------------------------------
def test_uploads_that_are_not_usable_images_are_refused_in_one_line(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(InputError, match=r"^notes.png is not an image img2mesh can read \(supported: PNG"):
        check_upload(text)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        check_upload(empty)
    small = write_png(tmp_path / "small.png", np.zeros((40, 300, 3), np.uint8))
    with pytest.raises(InputError, match=r"small.png is 300x40 px, too small: give at least 64 px"):
        check_upload(small)
    huge = tmp_path / "huge.png"
    Image.new("1", (9000, 6000)).save(huge)  # 54 MP of 1-bit pixels: a small file that decodes big
    with pytest.raises(InputError, match="9000x6000 px: the limit is 50 megapixels"):
        check_upload(huge)
    with pytest.raises(InputError, match=r"huge.png is 0\.\d MB: the limit is 0\.001 MB"):
        check_upload(huge, max_mb=0.001)
    assert check_upload(write_png(tmp_path / "ok.png", np.zeros((64, 80, 4), np.uint8))) == (80, 64)


def test_requests_become_bounded_overrides_and_keep_the_server_model(tmp_path):
    service = WebService(tmp_path / "runs", "cpu", ["recon.steps=7"], model=object())  # a stand-in bundle
    assert service.device.type == "cpu" and service.concurrency == 1
    got = service.overrides_for(Request(elevation=12.5, num_views=6, steps=3.0, seed=4))
    assert got[0] == "recon.steps=7"  # the server's own overrides first, the page's on top
    assert got[1:5] == ["data.elevation=12.5", "diffusion.num_views=6", "diffusion.steps=3", "seed=4"]
    assert got[5:] == ["device=cpu", "diffusion.model=kxic/zero123-xl", "diffusion.dtype=auto"]
    for request, message in [(Request(num_views=500), r"num views must be between 2 and 72, got 500"),
                             (Request(elevation=91), r"elevation must be between -90.0 and 90.0"),
                             (Request(elevation=float("nan")), r"elevation must be between"),
                             (Request(steps=2.5), r"steps must be a whole number"),
                             (Request(seed=-1), r"seed must be between 0"),
                             (Request(seed="x"), r"seed must be a number")]:
        with pytest.raises(InputError, match=message):
            service.overrides_for(request)
    with pytest.raises(InputError, match="unknown preset 'fast'"):
        service.config_for("fast")
    with pytest.raises(InputError, match="invalid scene name '../etc'"):
        service.scene("../etc")
    with pytest.raises(InputError, match="upload an image"):
        service.start(Request())
    assert not (tmp_path / "runs").exists()  # nothing refused leaves a folder
    assert service.config_for("cpu").recon.steps == 7
    service.close()
    assert not service.staging_root.exists()


def test_the_page_sets_the_texture_and_the_face_budget(tmp_path):
    from img2mesh.web import build_app

    service = WebService(tmp_path / "runs", "cpu", model=object())
    ids = {c["props"].get("elem_id") for c in build_app(service).config["components"]}
    assert {"img2mesh-texture", "img2mesh-faces", "img2mesh-run"} <= ids
    extra = service.overrides_for(Request(texture=False, target_faces=5000))
    assert "export.texture=False" in extra and "export.target_faces=5000" in extra
    with pytest.raises(InputError, match="target faces must be between 0 and 5000000"):
        service.overrides_for(Request(target_faces=-1))
    service.close()


def test_a_scene_keeps_its_camera_unless_the_elevation_moves(tmp_path, shared):
    service = WebService(tmp_path / "runs", "cpu", model=object())
    scene = find_scene("pikachu")
    same = service._source(Request(scene="pikachu", elevation=round(scene.camera.elevation, 1)))
    assert np.array_equal(same.camera.c2w, scene.camera.c2w) and same.label == "pikachu"
    moved = service._source(Request(scene="pikachu", elevation=30.0)).camera
    assert moved.elevation == pytest.approx(30.0)
    assert moved.azimuth == pytest.approx(scene.camera.azimuth) and moved.radius == pytest.approx(scene.camera.radius)
    assert moved.fov_x == scene.camera.fov_x
    assert "pikachu" in service.scenes() and len(service.scenes()) >= 10
    assert safe_label("../../etc/passwd") == "etc-passwd" and safe_label("...") == "image"
    assert safe_label("my mug (1)") == "my-mug-1"
    service.close()


def test_obj_zip_holds_the_material_and_textures_and_nothing_outside(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "secret.txt").write_text("not for download")
    (run / "mesh.obj").write_text("mtllib mesh.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (run / "mesh.mtl").write_text("newmtl m\nmap_Kd mesh_texture.png\nmap_Bump ../secret.txt\n")
    write_png(run / "mesh_texture.png", np.zeros((4, 4, 3), np.uint8))
    with zipfile.ZipFile(obj_zip(run / "mesh.obj", tmp_path / "out.zip")) as z:
        assert sorted(z.namelist()) == ["mesh.mtl", "mesh.obj", "mesh_texture.png"]


# -- the CLI ------------------------------------------------------------------------------------------------
def test_serve_without_gradio_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    assert main(["serve", "--quiet"]) == 4
    assert 'pip install "img2mesh[web]"' in capsys.readouterr().err


def test_serve_passes_its_options_and_binds_to_localhost_by_default(monkeypatch):
    import img2mesh.web

    seen = {}
    monkeypatch.setattr(img2mesh.web, "serve", lambda **kwargs: seen.update(kwargs) or 0)
    assert main(["serve", "-c", "cpu", "--port", "8123", "--concurrency", "2", "--model", "tiny/dir", "seed=3",
                 "--quiet"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123 and seen["concurrency"] == 2
    assert seen["preset"] == "cpu" and seen["overrides"] == ["seed=3"] and seen["model"] == "tiny/dir"
    assert seen["out"] == Path("runs/web") and seen["max_upload_mb"] == 25.0


def test_serve_refuses_a_busy_port_in_one_line(tmp_path):
    from img2mesh.web import start

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(InputError, match=f"cannot serve on 127.0.0.1:{port}.*choose another --port"):
            start(out=tmp_path / "runs", port=port, model=object(), quiet=True)
    with pytest.raises(InputError, match="--concurrency must be at least 1"):
        start(out=tmp_path / "runs", port=free_port(), model=object(), concurrency=0, quiet=True)


def test_img2mesh_serve_starts_serves_the_page_and_stops_cleanly_on_sigterm(model_dir, tmp_path):
    import signal
    import subprocess
    import urllib.request

    port, temp = free_port(), tmp_path / "tmp"
    temp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "img2mesh", "serve", "--port", str(port), "--model", str(model_dir),
                             "-c", "cpu", "--out", str(tmp_path / "runs")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "TMPDIR": str(temp)})  # where its staging folder goes
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("img2mesh web app:"):
                break
        assert lines and lines[-1].startswith(f"img2mesh web app: http://127.0.0.1:{port}/"), "".join(lines)
        staging = list(temp.glob("img2mesh-web-*"))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.status == 200 and b"img2mesh" in page.read()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "stopping the web app" in out
        assert len(staging) == 1 and not staging[0].exists()  # the staged downloads went with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# -- a job, cancelled -----------------------------------------------------------------------------------------
def test_a_cancelled_job_stops_at_its_next_step_and_keeps_finished_stages(model_dir, tmp_path, shared):
    import img2mesh.api

    service = WebService(tmp_path / "runs", "cpu", FAST, model=img2mesh.api.load_model(str(model_dir), "cpu"))
    job = service.start(Request(scene="pikachu"))
    for state in job.updates(interval=0.01):
        if state.stage == "views":
            job.cancel()
    assert state.finished and state.error == "cancelled" and state.done.keys() == {"preprocess"}
    meta = json.loads((job.rd.root / "run.json").read_text())
    assert set(meta["stages"]) == {"preprocess"} and not (job.rd.root / "views").exists()
    assert service.gpu.acquire(blocking=False)  # the slot was given back
    service.close()


# -- the app through its API (gradio_client) ------------------------------------------------------------------
def test_scene_pick_and_upload_preview_the_cutout(client, photo):
    scene = find_scene("pikachu")
    image, elevation, cutout = client.predict("pikachu", True, api_name="/scene")
    assert elevation == pytest.approx(scene.camera.elevation, abs=0.05)
    with Image.open(image) as im:
        assert im.size == Image.open(scene.image_path).size
    from gradio_client import handle_file

    scene_value, cutout = client.predict(handle_file(str(photo)), True, api_name="/upload")
    assert scene_value is None  # an upload replaces a picked scene
    alpha = np.asarray(Image.open(cutout).convert("RGBA"))[..., 3]
    assert alpha.shape == (256, 256) and 0.05 < (alpha > 127).mean() < 0.9  # rembg found the object


def test_bad_requests_get_one_line_and_the_next_photo_gets_a_mesh(server, client, photo, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    tiny = write_png(tmp_path / "tiny.png", np.full((32, 32, 3), 200, np.uint8))
    faint = np.zeros((96, 96, 4), np.uint8)
    faint[..., :3], faint[..., 3] = 90, 100  # an alpha channel with nothing above half: an empty mask
    faint = write_png(tmp_path / "faint.png", faint)
    before = run_dirs(server)

    def run(image, **settings):
        values = dict(scene_name=None, keep=True, elev=0.0, preset_name="cpu", n_views=4, n_steps=2, seed_value=0)
        values.update(settings)
        return client.submit(handle_file(str(image)), *values.values(), api_name="/run")

    for image, settings, message in [
        (not_image, {}, r"^notes\.txt is not an image img2mesh can read \(supported: PNG"),
        (tiny, {}, r"^tiny\.png is 32x32 px, too small: give at least 64 px on each side$"),
        (faint, {}, r"^no foreground object found in the image \(the mask is empty\)"),
        (photo, {"n_views": 500}, r"^num views must be between 2 and 72, got 500$"),
        (photo, {"elev": -120}, r"^elevation must be between -90.0 and 90.0, got -120$"),
        (photo, {"seed_value": -3}, r"^seed must be between 0 and 2147483647, got -3$"),
        (photo, {"preset_name": "../../etc/passwd"}, r"^unknown preset '\.\./\.\./etc/passwd': choose one of cpu"),
        (photo, {"scene_name": "../secret"}, r"^invalid scene name '\.\./secret': use letters"),
    ]:
        with pytest.raises(AppError) as err:
            run(image, **settings).result()
        assert re.match(message, str(err.value)) and "\n" not in str(err.value).strip(), str(err.value)
    assert run_dirs(server) == before  # refused requests leave no run folder

    start = time.perf_counter()
    job = run(photo, seed_value=1)
    status, cutout, gallery, glb, obj, ply, turntable = job.result()
    elapsed = time.perf_counter() - start
    assert status.startswith("- ✓ **preprocess**") and "Done in" in status

    # the views arrive before the mesh, with the configured number of images (the input included)
    outputs = job.outputs()
    first_views = next(i for i, o in enumerate(outputs) if isinstance(o[2], list))
    first_mesh = next(i for i, o in enumerate(outputs) if (o[3] or {}).get("value"))
    assert first_views < first_mesh == len(outputs) - 1
    assert len(gallery) == 4 and all(Path(g["image"]).is_file() for g in gallery)
    assert np.asarray(Image.open(gallery[0]["image"])).shape[:2] == (256, 256)
    # live progress: the stage and the bar's label with step counts, as the CLI shows them
    statuses = [o[0] for o in outputs if isinstance(o[0], str)]
    assert any(re.search(r"▶ \*\*recon\*\* \(stage 3 of 4\) · recon neus \d+/10", s) for s in statuses)
    assert any(re.search(r"▶ \*\*views\*\* \(stage 2 of 4\) · views \(viewfusion\) \d/3", s) for s in statuses)

    mesh = trimesh.load(glb["value"], force="mesh")
    assert len(mesh.faces) > 100
    assert len(trimesh.load(ply["value"]).faces) == len(mesh.faces)  # (a textured GLB splits vertices at UV seams)
    with zipfile.ZipFile(obj["value"]) as z:
        assert {"mesh.obj", "mesh.mtl"} <= set(z.namelist())
    assert Path(turntable["value"]).name.endswith("-turntable.mp4") and Path(turntable["value"]).stat().st_size > 0

    # a normal run folder: the CLI resumes it without recomputing anything
    (run_dir,) = sorted(set(run_dirs(server)) - set(before))
    assert run_dir.parent.name == "pika-photo" and (run_dir / "input" / "original.jpg").is_file()
    again = img2mesh.run(resume=run_dir, quiet=True)
    assert again.stages_run == [] and again.stages_skipped == ["preprocess", "views", "recon", "export"]
    config = (run_dir / "config.yaml").read_text()
    assert "device: cpu" in config and "seed: 1" in config and "num_views: 4" in config
    print(f"web run (tiny model, cpu preset, FAST): {elapsed:.1f} s from submit to the mesh")


# -- the real page in headless Chromium -----------------------------------------------------------------------
def chromium_paths():
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    return browser, driver


# Elements of the page whose content is wider than they are and clipped or scrolled (a cut control), and
# horizontal overflow of the page itself.
CUT_CONTROLS = """
const cut = [];
for (const el of document.querySelectorAll('.gradio-container *')) {
  const style = getComputedStyle(el);
  if (el.offsetParent === null && style.position !== 'fixed') continue;
  if (['auto', 'scroll', 'hidden', 'clip'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1)
    cut.push(`${el.id || el.className}: ${el.scrollWidth} px of content in ${el.clientWidth} px`);
}
if (document.documentElement.scrollWidth > window.innerWidth) cut.push('the page scrolls sideways');
return cut;
"""


def drawn_share(png: bytes) -> float:
    """Share of an element's pixels that differ from its corner (its background)."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return float((np.abs(pixels - pixels[2, 2]).sum(axis=-1) > 30).mean())


def test_the_page_in_headless_chromium(server, photo, tmp_path):
    browser, driver_path = chromium_paths()
    if browser is None or driver_path is None:
        pytest.skip("Chromium or chromedriver is not installed (apt-get install chromium chromium-driver; "
                    ".ci/run installs them): the browser test cannot run here")
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager: never look for drivers online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1150",
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader",  # WebGL for the 3D viewer, on the CPU
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # the page may reach this server only
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(server.url)
        upload = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#img2mesh-image input[type=file]")))
        for width in (1280, 1920):  # common screens: every control whole, nothing scrolls sideways
            driver.set_window_size(width, 1150)
            wait.until(lambda d: d.execute_script("return window.innerWidth") == width)
            time.sleep(0.5)  # the layout settles
            assert driver.execute_script(CUT_CONTROLS) == [], f"cut controls at {width} px"
        driver.set_window_size(1400, 1150)
        upload.send_keys(str(photo))
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#img2mesh-cutout img")))
        clicked = time.perf_counter()
        driver.find_element(By.CSS_SELECTOR, "#img2mesh-run").click()

        long_wait = WebDriverWait(driver, 300)
        long_wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#img2mesh-views-gallery img")) >= 4)
        canvas = long_wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#img2mesh-model canvas")))
        long_wait.until(lambda d: drawn_share(canvas.screenshot_as_png) > 0.01)  # the mesh is on screen
        seconds = time.perf_counter() - clicked
        link = driver.find_element(By.CSS_SELECTOR, "#img2mesh-model a[download]").get_attribute("href")
        assert link.startswith(server.url.rstrip("/")) and link.endswith("pika-photo.glb")
        button = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#img2mesh-download-glb")))
        status = driver.find_element(By.CSS_SELECTOR, "#img2mesh-status").text
        assert "Done in" in status and "recon" in status
        shot = tmp_path / "web.png"
        driver.save_screenshot(str(shot))
        button.click()
        wait.until(lambda d: (downloads / "pika-photo.glb").is_file())
        assert len(trimesh.load(downloads / "pika-photo.glb", force="mesh").faces) > 100
        with Image.open(shot) as im:
            assert im.size[0] >= 1000
        if os.environ.get(SCREENSHOT_ENV):
            shutil.copyfile(shot, os.environ[SCREENSHOT_ENV])
        print(f"browser: {seconds:.1f} s from clicking Run to the mesh in the viewer; screenshot {shot}")
    finally:
        driver.quit()
