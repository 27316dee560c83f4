"""The REST API of `img2mesh serve`, beside the page: the same queue, the same run folders (app/jobs_store.py).

    POST   /api/jobs                  multipart: image (the photo), elevation, preset, settings (JSON) -> {"id"}
    GET    /api/jobs                  every job, newest first
    GET    /api/jobs/{id}             status, stage, progress per stage, timings, error
    GET    /api/jobs/{id}/files/NAME  mesh.glb | mesh.obj.zip | mesh.ply | turntable.mp4 | views_grid.png
    DELETE /api/jobs/{id}             cancel a queued or running job
    POST   /api/jobs/{id}/resume      continue an interrupted (cancelled, failed) job from its last finished stage

OpenAPI docs at /docs. With a token every /api route needs ``Authorization: Bearer TOKEN``; served anywhere
but loopback, the server refuses to start without one unless told ``--no-auth``.
"""

import ipaddress
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from img2mesh.data.errors import InputError

from .jobs_store import FILES, Conflict, JobStore, QueueFull
from .web_jobs import Request, check_upload, safe_label

TOKEN_ENV = "IMG2MESH_TOKEN"
# what `settings` may change: the page's settings, by the CLI's keys -> the request's fields
SETTINGS = {"diffusion.num_views": "num_views", "diffusion.steps": "steps", "seed": "seed",
            "export.texture": "texture", "export.target_faces": "target_faces"}
CHUNK = 1 << 20


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def access_token(host: str, token: str | None, no_auth: bool) -> str | None:
    """The token requests must carry (None: none needed). Off loopback one is required unless ``no_auth``."""
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) < 16:
        raise InputError("the token is too short: use at least 16 characters, e.g. "
                         "python -c 'import secrets; print(secrets.token_urlsafe())'")
    if token is None and not no_auth and not is_loopback(host):
        raise InputError(f"serving on {host} opens the server to the network: give a token (--token TOKEN or "
                         f"${TOKEN_ENV}) that clients send as 'Authorization: Bearer TOKEN', or pass --no-auth")
    return token


def settings_request(raw: str | None) -> dict:
    """The ``settings`` field (a JSON object of CLI keys) as Request fields; only what the page may change."""
    if raw is None or not raw.strip():
        return {}
    try:
        values = json.loads(raw)
    except ValueError as e:
        raise InputError(f"settings is not valid JSON ({e.msg}): send an object such as {{\"seed\": 1}}") from None
    if not isinstance(values, dict):
        raise InputError("settings must be a JSON object such as {\"seed\": 1}")
    out = {}
    for key, value in values.items():
        if key not in SETTINGS:
            raise InputError(f"settings key {key!r} cannot be set through the API: use {', '.join(SETTINGS)}")
        out[SETTINGS[key]] = value
    return out


def _upload_name(name: str | None) -> str:
    name = name or "image.png"
    if "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        raise InputError(f"the file name {name!r} has path parts: send a plain file name such as photo.png")
    return name


def build_api(store: JobStore, token: str | None, max_upload_mb: float):
    """A FastAPI app holding the API routes and /docs; the page is mounted on it at / (app/web.py)."""
    from fastapi import APIRouter, Depends, FastAPI, HTTPException
    from fastapi import Request as HTTPRequest
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    service = store.service
    max_bytes = int(max_upload_mb * 1e6)
    bearer = HTTPBearer(auto_error=False, description="the server's token (`--token` or $IMG2MESH_TOKEN)")

    def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token is None:
            return
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise HTTPException(401, "this server needs its token: send 'Authorization: Bearer TOKEN'",
                                headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="img2mesh", summary="One photo of an object in, a textured 3D mesh out.",
                  docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")
    api = APIRouter(prefix="/api", dependencies=[Depends(authorised)])  # every route needs the token, if any

    def record(job_id: str):
        try:
            return store.get(job_id)
        except KeyError:
            raise HTTPException(404, f"no job {job_id!r} on this server") from None

    def refuse(error: Exception):
        if isinstance(error, QueueFull):
            return JSONResponse({"detail": str(error)}, 429, headers={"Retry-After": str(error.retry_after)})
        if isinstance(error, Conflict):
            return JSONResponse({"detail": str(error)}, 409)
        text = str(error)
        status = 413 if "megapixels" in text or "MB: the limit" in text else 415 if "is not an image" in text else 400
        return JSONResponse({"detail": text}, status)

    def act(job_id: str, action, status: str):
        record(job_id)
        try:
            rec = action(job_id)
        except (Conflict, QueueFull, InputError) as e:
            return refuse(e)
        return {"id": rec.id, "status": status, "url": f"/api/jobs/{rec.id}"}

    upload_body = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["image"], "properties": {
            "image": {"type": "string", "format": "binary", "description": "the photo (PNG, JPEG, WebP...)"},
            "elevation": {"type": "number", "description": "camera elevation in degrees (-90 to 90)"},
            "preset": {"type": "string", "description": "a config preset of the server (default: its own)"},
            "settings": {"type": "string", "description": "a JSON object of config keys: "
                                                          + ", ".join(SETTINGS)}}}}}}}

    @api.post("/jobs", status_code=202, openapi_extra=upload_body,
              summary="Submit a photo: a job that makes its mesh")
    async def submit(http: HTTPRequest):
        length = http.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes + CHUNK:
            return JSONResponse({"detail": f"the upload is {int(length) / 1e6:.1f} MB: the limit is "
                                           f"{max_upload_mb:g} MB"}, 413)
        if length == "0":
            return JSONResponse({"detail": "the request body is empty: send the photo as multipart field 'image'"},
                                400)
        try:
            form = await http.form(max_files=1, max_fields=8)
        except Exception as e:  # not multipart, or malformed: the parser's own words
            return JSONResponse({"detail": f"send multipart/form-data with the photo in field 'image' ({e})"}, 400)
        folder = Path(tempfile.mkdtemp(prefix="upload-", dir=service.staging_root))
        try:
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise InputError("no file in field 'image': send the photo as multipart field 'image'")
            name = _upload_name(upload.filename)
            suffix = Path(name).suffix.lower()
            path = folder / (safe_label(Path(name).stem) + (suffix if suffix[1:].isalnum() else ""))
            size = 0
            with open(path, "wb") as f:
                while chunk := await upload.read(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        return JSONResponse({"detail": f"{name} is over {max_upload_mb:g} MB: the limit is "
                                                       f"{max_upload_mb:g} MB"}, 413)
                    f.write(chunk)
            if size == 0:
                raise InputError(f"{name} is an empty file (0 bytes)")
            await run_in_threadpool(check_upload, path, max_upload_mb)
            fields = settings_request(form.get("settings"))
            elevation = form.get("elevation")
            request = Request(image=str(path), elevation=_number("elevation", elevation),
                              preset=form.get("preset") or None, **fields)
            rec = await run_in_threadpool(store.submit, request, name)
        except (InputError, QueueFull) as e:
            return refuse(e)
        finally:
            await form.close()
            shutil.rmtree(folder, ignore_errors=True)  # the run keeps its own copy of the input
        return {"id": rec.id, "status": "queued", "url": f"/api/jobs/{rec.id}"}

    @api.get("/jobs", summary="Every job, newest first")
    def listing():
        return {"jobs": store.listing()}

    @api.get("/jobs/{job_id}",
             summary="A job's status, stage, progress per stage, timings and error")
    def status(job_id: str):
        return store.describe(record(job_id))

    @api.delete("/jobs/{job_id}", status_code=202,
                summary="Cancel a queued or running job (its finished stages are kept)")
    def cancel(job_id: str):
        return act(job_id, store.cancel, "cancelling")

    @api.post("/jobs/{job_id}/resume", status_code=202,
              summary="Continue an interrupted, cancelled or failed job from its last finished stage")
    def resume(job_id: str):
        return act(job_id, store.resume, "queued")

    @api.get("/jobs/{job_id}/files/{name}",
             summary="A finished job's file: " + " | ".join(FILES))
    def download(job_id: str, name: str):
        rec = record(job_id)
        if name not in FILES:
            raise HTTPException(404, f"no file {name!r}: a job offers {', '.join(FILES)}")
        described = store.describe(rec)
        if described["status"] != "done":
            raise HTTPException(409, f"job {job_id} is {described['status']}: its files come when it is done")
        path = store.file(rec, name)
        if path is None:
            raise HTTPException(404, f"job {job_id} has no {name} (its config did not write one)")
        return FileResponse(path, filename=f"{rec.label}-{name}")

    app.include_router(api)
    return app


def _number(key: str, value) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{key} must be a number, got {value!r}") from None
