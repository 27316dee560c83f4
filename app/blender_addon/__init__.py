"""img2mesh for Blender: a photo in, a textured mesh at the 3D cursor, made by an `img2mesh serve` server.

Sidebar (N) > img2mesh in the 3D viewport: pick a photo (a file, or an image already in the .blend), its
camera elevation and a preset, the server's URL and token; Generate sends it to the server's REST API, the
panel shows the stage and its progress while Blender stays responsive (the HTTP calls run in a thread, a
modal timer brings their news to the panel), and the finished GLB is imported at the 3D cursor, upright
(Blender's glTF importer turns glTF's y-up into z-up), with its textured material. Cancel cancels the job.

Only Blender's own Python is needed (urllib, json, threading): nothing of img2mesh runs inside Blender.
`img2mesh blender-addon --out DIR` builds the installable zip (Edit > Preferences > Add-ons > Install from Disk).
"""
import json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

import bpy

bl_info = {  # for Blender versions before extensions (4.1 and older)
    "name": "img2mesh",
    "description": "A photo in, a textured 3D mesh out, from an img2mesh server",
    "author": "img2mesh",
    "version": (0, 1, 0),
    "blender": (4, 2, 0),
    "location": "3D Viewport > Sidebar > img2mesh",
    "category": "Import-Export",
}

STAGES = ("preprocess", "views", "recon", "export")
POLL_SECONDS = 0.5
PRESETS = [("", "Server's", "the preset the server was started with"), ("default", "default", "GPU quality"),
           ("cpu", "cpu", "fewer views and steps, for a CPU"), ("reference", "reference", "the paper's settings")]


class ServerError(Exception):
    pass


def call(settings, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
         timeout: float = 30.0) -> bytes:
    """One request to the server; ServerError with the server's own message on an HTTP error."""
    request = urllib.request.Request(settings["server"].rstrip("/") + path, data=body, method=method)
    if settings["token"]:
        request.add_header("Authorization", f"Bearer {settings['token']}")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.read()
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("detail", e.reason)
        except ValueError:
            detail = e.reason
        raise ServerError(f"{e.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        raise ServerError(f"cannot reach {settings['server']} ({getattr(e, 'reason', e)})") from None


def multipart(fields: dict, file_name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{file_name}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Job:
    """One generation: a thread submits, polls and downloads; the main thread reads ``state`` and imports."""

    def __init__(self, settings: dict, file_name: str, data: bytes):
        self.settings, self.file_name, self.data = settings, file_name, data
        self.state = {"status": "submitting", "stage": "", "fraction": 0.0, "error": "", "id": "", "glb": ""}
        self.cancelled = threading.Event()
        self.thread = threading.Thread(target=self._work, name="img2mesh", daemon=True)

    def start(self) -> "Job":
        self.thread.start()
        return self

    def _work(self) -> None:
        try:
            fields = {"settings": json.dumps(self.settings.get("overrides", {}))}
            if self.settings.get("elevation") is not None:
                fields["elevation"] = str(self.settings["elevation"])
            if self.settings.get("preset"):
                fields["preset"] = self.settings["preset"]
            body, kind = multipart(fields, self.file_name, self.data)
            job_id = json.loads(call(self.settings, "POST", "/api/jobs", body, kind))["id"]
            self.state.update(id=job_id, status="queued")
            while True:
                if self.cancelled.is_set():
                    call(self.settings, "DELETE", f"/api/jobs/{job_id}")
                    self.cancelled.clear()  # asked once; the server reports "cancelled" when it stopped
                status = json.loads(call(self.settings, "GET", f"/api/jobs/{job_id}"))
                stage = status.get("stage") or ""
                fraction = (status["progress"].get(stage) or {}).get("fraction") or 0.0 if stage else 0.0
                self.state.update(status=status["status"], stage=stage, fraction=float(fraction),
                                  error=status.get("error") or "")
                if status["status"] not in ("queued", "running"):
                    break
                time.sleep(POLL_SECONDS)
            if status["status"] == "done":
                glb = call(self.settings, "GET", f"/api/jobs/{job_id}/files/mesh.glb", timeout=300)
                path = os.path.join(tempfile.mkdtemp(prefix="img2mesh-"), f"{job_id}.glb")
                with open(path, "wb") as f:
                    f.write(glb)
                self.state.update(glb=path)
            elif not self.state["error"]:
                self.state["error"] = f"the job was {status['status']}"
        except Exception as e:  # the panel shows it; Blender goes on
            self.state.update(status="failed", error=str(e))

    @property
    def finished(self) -> bool:
        return not self.thread.is_alive()


def image_bytes(props) -> tuple[str, bytes]:
    """The photo as (file name, bytes): a file, or an image of the .blend (packed, on disk, or its pixels)."""
    if props.source == "FILE":
        path = bpy.path.abspath(props.filepath)
        if not props.filepath or not os.path.isfile(path):
            raise ServerError(f"choose a photo file (not found: {props.filepath or 'none'})")
        with open(path, "rb") as f:
            return os.path.basename(path), f.read()
    image = props.image
    if image is None:
        raise ServerError("choose an image of this .blend")
    name = bpy.path.clean_name(image.name) or "image"
    if image.packed_file is not None:
        return f"{name}.{image.file_format.lower() or 'png'}", bytes(image.packed_file.data)
    path = bpy.path.abspath(image.filepath) if image.filepath else ""
    if path and os.path.isfile(path):
        with open(path, "rb") as f:
            return os.path.basename(path), f.read()
    with tempfile.TemporaryDirectory() as folder:  # generated or painted: its pixels as a PNG
        target = os.path.join(folder, f"{name}.png")
        copy = image.copy()
        try:
            copy.filepath_raw, copy.file_format = target, "PNG"
            copy.save()
        finally:
            bpy.data.images.remove(copy)
        with open(target, "rb") as f:
            return f"{name}.png", f.read()


def import_at_cursor(context, path: str, name: str) -> list:
    """Import the GLB (the glTF importer makes it z-up, textured) and move it to the 3D cursor."""
    before = set(bpy.data.objects)
    bpy.ops.import_scene.gltf(filepath=path)
    new = [o for o in bpy.data.objects if o not in before]
    for obj in new:
        if obj.parent is None:
            obj.location = obj.location + context.scene.cursor.location
        if obj.type == "MESH":
            obj.name = f"img2mesh {name}"
    return new


class Img2MeshSettings(bpy.types.PropertyGroup):
    source: bpy.props.EnumProperty(name="Photo", items=[("FILE", "File", "a photo file"),
                                                         ("BLEND", "Image", "an image of this .blend")])
    filepath: bpy.props.StringProperty(name="File", subtype="FILE_PATH")
    image: bpy.props.PointerProperty(name="Image", type=bpy.types.Image)
    elevation: bpy.props.FloatProperty(name="Elevation", default=0.0, min=-90.0, max=90.0,
                                       description="the camera's rough elevation above the object's equator, degrees")
    preset: bpy.props.EnumProperty(name="Preset", items=PRESETS)
    server: bpy.props.StringProperty(name="Server", default="http://127.0.0.1:7860")
    token: bpy.props.StringProperty(name="Token", subtype="PASSWORD", description="the server's --token, if any")
    # what the panel shows of the running job
    status: bpy.props.StringProperty(default="")
    stage: bpy.props.StringProperty(default="")
    fraction: bpy.props.FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    error: bpy.props.StringProperty(default="")
    job_id: bpy.props.StringProperty(default="")


_running: dict = {}  # scene name -> Job


def _settings(props) -> dict:
    return {"server": props.server, "token": props.token, "elevation": props.elevation, "preset": props.preset}


class IMG2MESH_OT_generate(bpy.types.Operator):
    """Send the photo to the img2mesh server and import the mesh it makes at the 3D cursor"""

    bl_idname = "img2mesh.generate"
    bl_label = "Generate"
    _timer = None

    def _start(self, context):
        props = context.scene.img2mesh
        if context.scene.name in _running:
            self.report({"ERROR"}, "a job is already running for this scene")
            return None
        try:
            name, data = image_bytes(props)
        except ServerError as e:
            self.report({"ERROR"}, str(e))
            return None
        props.status, props.stage, props.fraction, props.error, props.job_id = "submitting", "", 0.0, "", ""
        self._name = os.path.splitext(name)[0]
        job = _running[context.scene.name] = Job(_settings(props), name, data).start()
        return job

    def _sync(self, context, job) -> bool:
        """Copy the job's news into the panel; on its end import the mesh. True when it is over."""
        props = context.scene.img2mesh
        state = dict(job.state)
        props.status, props.stage, props.fraction = state["status"], state["stage"], state["fraction"]
        props.error, props.job_id = state["error"], state["id"]
        for area in context.screen.areas if context.screen else ():
            if area.type == "VIEW_3D":
                area.tag_redraw()
        if not job.finished:
            return False
        _running.pop(context.scene.name, None)
        if state["glb"]:
            import_at_cursor(context, state["glb"], self._name)
            props.status = "imported"
        return True

    def execute(self, context):  # scripts and headless Blender: wait for the job here
        job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        while not self._sync(context, job):
            time.sleep(POLL_SECONDS / 5)
        return {"FINISHED"} if job.state["glb"] else {"CANCELLED"}

    def invoke(self, context, event):  # the panel's button: a modal timer keeps the UI responsive
        if self._start(context) is None:
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(POLL_SECONDS / 2, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        job = _running.get(context.scene.name)
        if job is None or self._sync(context, job):
            context.window_manager.event_timer_remove(self._timer)
            return {"FINISHED"}
        return {"PASS_THROUGH"}


class IMG2MESH_OT_cancel(bpy.types.Operator):
    """Cancel the running job on the server (its finished stages stay in its run folder)"""

    bl_idname = "img2mesh.cancel"
    bl_label = "Cancel"

    def execute(self, context):
        job = _running.get(context.scene.name)
        if job is None:
            return {"CANCELLED"}
        job.cancelled.set()
        context.scene.img2mesh.status = "cancelling"
        return {"FINISHED"}


class IMG2MESH_PT_panel(bpy.types.Panel):
    bl_label = "img2mesh"
    bl_idname = "IMG2MESH_PT_panel"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "img2mesh"

    def draw(self, context):
        props = context.scene.img2mesh
        layout = self.layout
        layout.prop(props, "source", expand=True)
        layout.prop(props, "filepath" if props.source == "FILE" else "image")
        layout.prop(props, "elevation")
        layout.prop(props, "preset")
        box = layout.box()
        box.prop(props, "server")
        box.prop(props, "token")
        running = context.scene.name in _running
        row = layout.row()
        row.enabled = not running
        row.operator(IMG2MESH_OT_generate.bl_idname, icon="MESH_MONKEY")
        if running:
            layout.operator(IMG2MESH_OT_cancel.bl_idname, icon="CANCEL")
        if props.status:
            stage = f" · {props.stage} ({STAGES.index(props.stage) + 1}/{len(STAGES)})" if props.stage in STAGES else ""
            layout.label(text=f"{props.status}{stage}")
            if running and props.stage:
                layout.prop(props, "fraction", text=props.stage, slider=True)
        if props.error:
            layout.label(text=props.error, icon="ERROR")


CLASSES = (Img2MeshSettings, IMG2MESH_OT_generate, IMG2MESH_OT_cancel, IMG2MESH_PT_panel)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.img2mesh = bpy.props.PointerProperty(type=Img2MeshSettings)


def unregister():
    del bpy.types.Scene.img2mesh
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
