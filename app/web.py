"""`img2mesh serve`: a gradio page over the pipeline (the optional extra ``img2mesh[web]``).

One process loads the Zero-1-to-3 model once and shares it; requests queue (``--concurrency``, one GPU job at
a time by default). Each request is a normal run folder under ``--out`` (app/web_jobs.py does the work; this
file is the page). Errors a user can cause are one-line messages on the page; the server binds to 127.0.0.1
unless told otherwise and serves copies of a run's downloads, never the run folders themselves. The REST API
(app/rest.py) shares the process, the queue and the run folders: one FastAPI app holds its routes and the page.
"""
from __future__ import annotations

import html
import logging
import os
import secrets
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from img2mesh.data.errors import Img2MeshError, InputError, UnavailableError
from img2mesh.data.progress import set_quiet

from .config import load_config
from .jobs_store import JobStore
from .pipeline import STAGES
from .rest import access_token, build_api
from .web_jobs import LIMITS, MAX_UPLOAD_MB, Request, Snapshot, WebService

log = logging.getLogger(__name__)

# A local tool does not report usage or check for updates over the network (gradio does both by default).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

DEFAULT_OUT = Path("runs/web")
CSS = "#img2mesh-status { min-height: 9em; }"


def _gradio():
    try:
        import gradio
    except ImportError:
        raise UnavailableError('`img2mesh serve` needs the web extra: pip install "img2mesh[web]" (gradio)') from None
    return gradio


def _error(gr, message: str):
    """gr.Error renders HTML: the message (which may hold a file name) is escaped (quotes are harmless in text)."""
    return gr.Error(html.escape(message, quote=False), print_exception=False)


def upload_path(payload, cache: str) -> str | None:
    """The uploaded file behind an image payload. The page's events skip gradio's own decoding of the image
    (it drops alpha or fails with a decoder's traceback); img2mesh reads the file and says what is wrong."""
    if payload is None:
        return None
    path = payload.get("path") if isinstance(payload, dict) else None
    if not path:
        raise InputError("the image did not arrive as a file: upload it again")
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(Path(cache).resolve()):  # gradio checks this too; the file system is ours
        raise InputError("that file was not uploaded to this server")
    return str(resolved)


def status_markdown(s: Snapshot) -> str:
    """The stages as the CLI logs them, with the running one's progress bar (label and step counts)."""
    lines = []
    for i, name in enumerate(STAGES, 1):
        if name in s.done:
            lines.append(f"- ✓ **{name}** {s.done[name]:.1f} s")
        elif name == s.stage:
            bar = ""
            if s.bar is not None:
                label, n, total = s.bar
                bar = f" · {label} {n}/{total}" if total else f" · {label} {n}"
            lines.append(f"- ▶ **{name}** (stage {i} of {len(STAGES)}){bar}")
        else:
            lines.append(f"- {name}")
    when = "Stopped after" if s.error else "Done in" if s.finished else "Running for"
    lines.append(f"\n{when} {s.seconds:.1f} s · run folder `{s.run_dir}` (the CLI can `--resume` or `export` it)")
    return "\n".join(lines)


def build_app(service: WebService):
    """The page: input and settings on the left, progress and results on the right."""
    gr = _gradio()
    base = service.base
    from img2mesh.diffusion.config import with_generator_defaults
    from img2mesh.diffusion.generators import generator_of_model

    def steps_of(cfg):  # unset steps are the loaded model's generator's own
        return with_generator_defaults(cfg.diffusion, generator_of_model(service.model)).steps

    # delete_cache: gradio's copies of uploads and results older than a day go, checked hourly (run folders stay)
    with gr.Blocks(title="img2mesh", analytics_enabled=False, delete_cache=(3600, 86400)) as app:
        gr.Markdown("# img2mesh\nOne photo of an object in, a 3D mesh out: Zero-1-to-3 + ViewFusion novel views, "
                    "then NeuS.")
        with gr.Row():
            with gr.Column(scale=4):
                image = gr.Image(label="Photo (upload, paste or drop)", type="filepath", image_mode=None,
                                 sources=["upload", "clipboard"], format="png", height=240, elem_id="img2mesh-image")
                scene = gr.Dropdown(service.scenes(), value=None, label="…or a public scene",
                                    elem_id="img2mesh-scene")
                keep_alpha = gr.Checkbox(True, label="Keep the image's own alpha as the mask",
                                         info="Off: rembg removes the background even where there is an alpha")
                cutout = gr.Image(label="Cut-out (what the model sees)", interactive=False, format="png",
                                  height=200, elem_id="img2mesh-cutout")
            with gr.Column(scale=4):
                elevation = gr.Slider(*LIMITS["elevation"], value=base.data.elevation, step=0.1,
                                      label="Camera elevation (degrees above the object's equator)",
                                      elem_id="img2mesh-elevation")
                preset = gr.Dropdown(service.presets(), value=service.preset if service.preset in service.presets()
                                     else None, label="Preset", elem_id="img2mesh-preset")
                num_views = gr.Slider(*LIMITS["num_views"], value=base.diffusion.num_views, step=1,
                                      label="Views (input included)", elem_id="img2mesh-views")
                steps = gr.Slider(*LIMITS["steps"], value=steps_of(base), step=1, label="Denoising steps",
                                  elem_id="img2mesh-steps")
                # Two numbers to a row and the texture checkbox under them: three in one row overflow the column
                # below ~1400 px.
                with gr.Row():
                    seed = gr.Number(base.seed, precision=0, minimum=LIMITS["seed"][0], maximum=LIMITS["seed"][1],
                                     label="Seed", elem_id="img2mesh-seed")
                    target_faces = gr.Number(base.export.target_faces, precision=0,
                                             minimum=LIMITS["target_faces"][0], maximum=LIMITS["target_faces"][1],
                                             label="Target faces (0: keep all)", elem_id="img2mesh-faces")
                texture = gr.Checkbox(base.export.texture, label="Texture",
                                      info="a UV texture in the GLB and OBJ (off: vertex colours)",
                                      elem_id="img2mesh-texture")
                run = gr.Button("Run", variant="primary", elem_id="img2mesh-run")
                status = gr.Markdown("Upload a photo or pick a scene, then Run.", label="Progress",
                                     elem_id="img2mesh-status")
            with gr.Column(scale=5):
                model3d = gr.Model3D(label="Mesh", height=400, elem_id="img2mesh-model")
                with gr.Row():
                    downloads = {
                        "glb": gr.DownloadButton("GLB", visible=False, size="md", elem_id="img2mesh-download-glb"),
                        "obj": gr.DownloadButton("OBJ (zip)", visible=False, size="md",
                                                 elem_id="img2mesh-download-obj"),
                        "ply": gr.DownloadButton("PLY", visible=False, size="md", elem_id="img2mesh-download-ply"),
                        "turntable": gr.DownloadButton("Turntable video", visible=False, size="md",
                                                       elem_id="img2mesh-download-turntable"),
                    }
        views = gr.Gallery(label="Generated views", columns=12, height=190, object_fit="contain",
                           fit_columns=False, elem_id="img2mesh-views-gallery")

        # -- input and preview --------------------------------------------------------------------------
        def preview(payload, scene_name, keep):
            try:
                return service.preview(upload_path(payload, image.GRADIO_CACHE), scene_name, bool(keep))
            except Img2MeshError as e:
                raise _error(gr, str(e)) from None

        def on_upload(payload, keep):
            return None, preview(payload, None, keep)

        def on_scene(scene_name, keep):
            if not scene_name:
                return gr.update(), gr.update(), gr.update()
            try:
                found = service.scene(scene_name)
            except Img2MeshError as e:
                raise _error(gr, str(e)) from None
            return _load_rgba(found.image_path), round(found.camera.elevation, 1), preview(None, scene_name, keep)

        def on_keep_alpha(payload, scene_name, keep):
            if not payload and not scene_name:
                return None
            return preview(payload, scene_name, keep)

        def on_preset(name):
            try:
                cfg = service.config_for(name)
            except Img2MeshError as e:
                raise _error(gr, str(e)) from None
            return [cfg.diffusion.num_views, steps_of(cfg), cfg.seed, cfg.export.texture, cfg.export.target_faces]

        preview_queue = dict(concurrency_limit=2, concurrency_id="preview")
        # (events that take the image skip gradio's preprocessing: see upload_path)
        image.upload(on_upload, [image, keep_alpha], [scene, cutout], api_name="upload", preprocess=False,
                     **preview_queue)
        image.clear(lambda: (None, None), None, [scene, cutout], api_name=False)
        scene.input(on_scene, [scene, keep_alpha], [image, elevation, cutout], api_name="scene", **preview_queue)
        keep_alpha.input(on_keep_alpha, [image, scene, keep_alpha], cutout, api_name="preview", preprocess=False,
                         **preview_queue)
        preset.input(on_preset, preset, [num_views, steps, seed, texture, target_faces], api_name=False)

        # -- the run --------------------------------------------------------------------------------------
        def on_run(payload, scene_name, keep, elev, preset_name, n_views, n_steps, seed_value, textured, faces):
            try:
                request = Request(image=None if scene_name else upload_path(payload, image.GRADIO_CACHE),
                                  scene=scene_name or None, keep_alpha=bool(keep), elevation=elev,
                                  preset=preset_name or None, num_views=n_views, steps=n_steps, seed=seed_value,
                                  texture=textured, target_faces=faces)
                job = service.start(request)
            except Img2MeshError as e:
                raise _error(gr, str(e)) from None
            sent_cutout = sent_views = False
            try:
                yield {status: status_markdown(Snapshot(run_dir=job.rd.root)), views: None, mesh: None,
                       **{b: gr.update(visible=False, value=None) for b in downloads.values()}}
                for state in job.updates():
                    if state.error:
                        raise _error(gr, state.error)
                    out: dict[Any, Any] = {status: status_markdown(state)}
                    # each image goes to the page once, as soon as it exists, and again in the last update so
                    # that an API client's final result holds every output
                    if state.cutout is not None and (not sent_cutout or state.finished):
                        out[cutout], sent_cutout = state.cutout, True
                    if state.views is not None and (not sent_views or state.finished):
                        out[views], sent_views = state.views, True
                    if state.finished:
                        out[mesh] = str(state.files["glb"]) if "glb" in state.files else None
                        for kind, button in downloads.items():
                            path = state.files.get(kind)
                            out[button] = gr.update(value=str(path) if path else None, visible=path is not None)
                    yield out
            finally:
                job.cancel()  # a no-op once it ended; a closed page stops its run at the next step

        # The viewer is filled by a plain step after the run: gradio's Model3D draws nothing for a value that
        # arrives from a generator (gradio 6.31), so the run hands the mesh over in a State.
        mesh = gr.State(None)
        run.click(lambda: None, None, model3d, queue=False, api_name=False).then(
            on_run, [image, scene, keep_alpha, elevation, preset, num_views, steps, seed, texture, target_faces],
            [status, cutout, views, mesh, *downloads.values()], api_name="run", preprocess=False,
            concurrency_limit=service.concurrency, concurrency_id="run").success(
            lambda path: path, mesh, model3d, api_name=False, queue=False)
    return app


def _load_rgba(path: Path):
    """A scene's image for the page (gradio serves copies only of files under the working or temp folder)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGBA")


@dataclass
class WebServer:
    app: Any  # the FastAPI app: the REST API (app/rest.py) with the page mounted at /
    service: WebService
    url: str
    jobs: JobStore
    server: Any  # uvicorn.Server, serving in ``thread``
    thread: threading.Thread

    def close(self) -> None:
        try:
            self.jobs.close()
            self.server.should_exit = True
            self.thread.join(timeout=30)
        finally:
            self.service.close()


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a busy port is an error at once (uvicorn would exit)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def start(out=DEFAULT_OUT, host: str = "127.0.0.1", port: int = 7860, model=None, preset: str | None = None,
          overrides=(), concurrency: int = 1, max_upload_mb: float = MAX_UPLOAD_MB, scene_root=None,
          quiet: bool = False, token: str | None = None, no_auth: bool = False, max_queue: int = 8) -> WebServer:
    """Load the model, build the page and the REST API and serve both in the background; ``close()`` stops it."""
    load_config(preset or "default", overrides)  # a bad setting is said first, before anything else
    gr = _gradio()  # before the model: a missing extra is said at once, not after a long load
    import uvicorn

    if not 1 <= int(port) <= 65535:
        raise InputError(f"--port must be between 1 and 65535, got {port}")
    if max_upload_mb <= 0:
        raise InputError(f"--max-upload-mb must be positive, got {max_upload_mb}")
    if max_queue < 0:
        raise InputError(f"--max-queue must be 0 or more, got {max_queue}")
    token = access_token(host, token, no_auth)
    service = WebService(out, preset, overrides, model=model, scene_root=scene_root, concurrency=concurrency,
                         max_upload_mb=max_upload_mb)
    try:
        jobs = JobStore(service, max_queue)
        blocks = build_app(service)
        blocks.queue(default_concurrency_limit=concurrency)
        app = build_api(jobs, token, max_upload_mb)
        # the page asks for the token as the password of its sign-in form (any user name)
        auth = None if token is None else (lambda _user, password: secrets.compare_digest(password, token))
        gr.mount_gradio_app(app, blocks, "/", server_name=host, server_port=int(port), auth=auth,
                            auth_message="Sign in with any name and the server's token as the password.",
                            show_error=False, ssr_mode=False, mcp_server=False,
                            max_file_size=int(max_upload_mb * 1e6), css=CSS)
        try:
            sock = _listen(host, int(port))
        except OSError as e:
            raise InputError(f"cannot serve on {host}:{port} ({e}): choose another --port") from None
        # keep-alive outlasts the event loop's stalls while a run holds the GIL in C code (mesh export): a
        # shorter one can close a connection whose next request has already arrived (a reset, for the client)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning" if quiet else "info", access_log=False,
                                               timeout_keep_alive=75, timeout_graceful_shutdown=5))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="img2mesh-http", daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise InputError(f"the server on {host}:{port} did not start (see the log above)")
            time.sleep(0.05)
    except BaseException:
        service.close()
        raise
    shown = f"[{host}]" if ":" in host else host
    return WebServer(app, service, f"http://{shown}:{port}/", jobs, server, thread)


def _stop(signum, frame):
    raise KeyboardInterrupt


def serve(**kwargs) -> int:
    """`img2mesh serve`: start and keep serving until Ctrl+C (or SIGTERM)."""
    set_quiet(True)  # progress bars of concurrent runs would interleave on one terminal; the page shows them
    server = start(**kwargs)
    try:  # from here on every way out closes the server
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _stop)  # a service manager's stop also removes the staged downloads
        print(f"img2mesh web app: {server.url} (runs in {Path(server.service.out).resolve()}); REST API "
              f"{server.url}api/jobs, its docs {server.url}docs; Ctrl+C stops it", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("img2mesh: stopping the web app", flush=True)
    finally:
        server.close()
    return 0
