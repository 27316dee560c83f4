"""`img2mesh serve`'s REST API with a tiny random Zero-1-to-3: submit -> poll -> download, bad uploads, the bounded
queue, cancelling, the token, and a server killed mid-job then started again. Everything on 127.0.0.1."""
import io
import json
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import trimesh
from PIL import Image

from img2mesh.cli import main
from img2mesh.data.errors import InputError
from img2mesh.data.progress import is_quiet, set_quiet
from img2mesh.rest import access_token
from fast import FAST
from servers import free_port, pikachu_photo, tiny_model, wait_for

httpx = pytest.importorskip("httpx")
pytest.importorskip("gradio")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("zero123"))


@pytest.fixture(scope="module")
def photo(tmp_path_factory, shared) -> Path:
    return pikachu_photo(tmp_path_factory.mktemp("photo") / "pika photo.jpg")


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory, shared):
    from img2mesh.web import start

    quiet = is_quiet()
    set_quiet(True)
    srv = start(out=tmp_path_factory.mktemp("rest") / "runs", port=free_port(), model=str(model_dir), preset="cpu",
                overrides=FAST, quiet=True, max_queue=1)
    yield srv
    srv.close()
    set_quiet(quiet)


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def submit(client, image: Path, name: str | None = None, **fields):
    data = {k: (json.dumps(v) if k == "settings" else str(v)) for k, v in fields.items()}
    with open(image, "rb") as f:
        return client.post("/api/jobs", files={"image": (name or image.name, f, "application/octet-stream")},
                           data=data)


def run_folders(server) -> set[Path]:
    return {p.parent for p in Path(server.service.out).glob("*/*/input")}


def test_a_photo_becomes_a_job_whose_files_download(server, client, photo):
    answer = submit(client, photo, elevation=5, settings={"seed": 1, "diffusion.steps": 2})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    assert len(job_id) >= 22 and job_id not in str(server.service.out)  # random, not derived from the name
    seen = []
    state = wait_for(client, job_id, seen=seen)
    assert state["status"] == "done", state
    assert set(state["timings"]) == {"preprocess", "views", "recon", "export"}
    assert all(p == {"state": "done", "fraction": 1.0} for p in state["progress"].values())
    running = [s for s in seen if s["status"] == "running" and s["stage"] == "recon" and "step" in s["progress"]["recon"]]
    assert running and running[-1]["progress"]["recon"]["total"] == 10 and running[-1]["progress"]["views"]["state"] == "done"
    assert max(s["progress"]["recon"]["step"] for s in running) > 0  # the training steps count up
    assert set(state["files"]) == {"mesh.glb", "mesh.obj.zip", "mesh.ply", "turntable.mp4", "views_grid.png"}

    base = f"/api/jobs/{job_id}/files"
    glb = client.get(f"{base}/mesh.glb")
    assert glb.status_code == 200 and glb.headers["content-disposition"].endswith('pika-photo-mesh.glb"')
    mesh = trimesh.load(io.BytesIO(glb.content), file_type="glb", force="mesh")
    assert len(mesh.faces) > 100
    ply = trimesh.load(io.BytesIO(client.get(f"{base}/mesh.ply").content), file_type="ply")
    assert len(ply.faces) == len(mesh.faces)
    with zipfile.ZipFile(io.BytesIO(client.get(f"{base}/mesh.obj.zip").content)) as z:
        assert {"mesh.obj", "mesh.mtl"} <= set(z.namelist())
    assert client.get(f"{base}/turntable.mp4").content[4:8] == b"ftyp"
    assert Image.open(io.BytesIO(client.get(f"{base}/views_grid.png").content)).size[0] > 256
    for name in ("run.json", "..%2Frun.json", "mesh.obj"):  # files only by the fixed names, never a path
        assert client.get(f"{base}/{name}").status_code == 404
    assert client.get("/api/jobs/not-a-job").status_code == 404

    listed = client.get("/api/jobs").json()["jobs"]
    assert job_id in [j["id"] for j in listed]
    config = (Path(server.service.out) / "pika-photo").glob("*/config.yaml")
    text = next(config).read_text()
    assert "seed: 1" in text and "elevation: 5.0" in text and "device: cpu" in text
    assert client.delete(f"/api/jobs/{job_id}").status_code == 409  # finished: nothing to cancel
    assert client.post(f"/api/jobs/{job_id}/resume").status_code == 409

    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "/api/jobs/{job_id}/files/{name}" in client.get("/openapi.json").json()["paths"]
    assert client.get("/").status_code == 200  # the page beside it


def test_bad_uploads_are_refused_with_a_reason_and_leave_nothing(server, client, photo, tmp_path):
    before, jobs = run_folders(server), len(client.get("/api/jobs").json()["jobs"])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 10000)).save(bomb)  # 200 MP of 1-bit pixels in a few kB
    big = tmp_path / "big.png"
    Image.new("1", (9000, 6000)).save(big)  # 54 MP: over the 50 MP limit
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(b"\xff" * 26_000_000)  # over --max-upload-mb
    cases = [
        (submit(client, text), 415, r"^notes\.png is not an image img2mesh can read"),
        (submit(client, empty), 400, r"^empty\.png is an empty file"),
        (submit(client, bomb), 413, r"^bomb\.png is 20000x10000 px: the limit is 50 megapixels"),  # the header says
        (submit(client, big), 413, r"^big\.png is 9000x6000 px: the limit is 50 megapixels"),
        (submit(client, huge), 413, r"the limit is 25 MB"),
        (submit(client, photo, name="../../etc/passwd.png"), 400, r"has path parts"),
        (submit(client, photo, settings={"recon.steps": 5}), 400, r"settings key 'recon.steps' cannot be set"),
        (submit(client, photo, settings={"diffusion.num_views": 500}), 400, r"num views must be between 2 and 72"),
        (submit(client, photo, elevation="high"), 400, r"elevation must be a number"),
        (submit(client, photo, elevation=95), 400, r"elevation must be between -90.0 and 90.0"),
        (submit(client, photo, preset="../x"), 400, r"unknown preset '\.\./x'"),
        (client.post("/api/jobs", content=b""), 400, r"the request body is empty"),
        (client.post("/api/jobs", data={"elevation": "3"}), 400, r"no file in field 'image'"),
        (client.post("/api/jobs", content=b"{}", headers={"content-type": "application/json"}), 400, r"multipart"),
    ]
    for answer, status, message in cases:
        assert answer.status_code == status and re.search(message, answer.json()["detail"]), answer.text
    assert run_folders(server) == before and len(client.get("/api/jobs").json()["jobs"]) == jobs


def test_a_full_queue_answers_429_and_cancel_stops_queued_and_running_jobs(server, client, photo):
    first = submit(client, photo).json()["id"]  # runs (--concurrency 1)
    wait_for(client, first, until=("running",))
    second = submit(client, photo).json()["id"]  # waits (--max-queue 1)
    full = submit(client, photo)
    assert full.status_code == 429 and int(full.headers["retry-after"]) >= 1
    assert "the queue is full" in full.json()["detail"]
    assert client.get(f"/api/jobs/{second}").json()["status"] == "queued"

    assert client.delete(f"/api/jobs/{second}").status_code == 202
    assert wait_for(client, second, timeout=10)["status"] == "cancelled"  # at once: it held no slot
    assert client.delete(f"/api/jobs/{first}").status_code == 202
    cancelled = wait_for(client, first, timeout=120)
    assert cancelled["status"] == "cancelled" and cancelled["error"] is None
    assert client.get(f"/api/jobs/{first}/files/mesh.glb").status_code == 409
    again = submit(client, photo)  # room again
    assert again.status_code == 202
    client.delete(f"/api/jobs/{again.json()['id']}")
    assert wait_for(client, again.json()["id"])["status"] == "cancelled"


def test_a_token_is_required_off_loopback_and_checked_on_every_api_call(tmp_path, monkeypatch, photo):
    from img2mesh.web import start

    monkeypatch.delenv("IMG2MESH_TOKEN", raising=False)
    with pytest.raises(InputError, match=r"serving on 0\.0\.0\.0 opens the server to the network: give a token"):
        access_token("0.0.0.0", None, False)
    assert access_token("0.0.0.0", None, True) is None and access_token("127.0.0.1", None, False) is None
    assert access_token("::1", None, False) is None and access_token("localhost", None, False) is None
    with pytest.raises(InputError, match="too short"):
        access_token("0.0.0.0", "abc", False)
    monkeypatch.setenv("IMG2MESH_TOKEN", "t" * 20)
    assert access_token("0.0.0.0", None, False) == "t" * 20
    monkeypatch.delenv("IMG2MESH_TOKEN")
    assert main(["serve", "--host", "0.0.0.0", "--port", str(free_port()), "--quiet"]) == 2  # before any model load

    token = "s3cret-token-for-the-test"
    srv = start(out=tmp_path / "runs", port=free_port(), model=object(), preset="cpu", token=token, quiet=True)
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            assert c.get("/api/jobs").status_code == 401
            assert c.get("/api/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
            refused = submit(c, photo)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert c.get("/api/jobs", headers={"Authorization": f"Bearer {token}"}).json() == {"jobs": []}
            assert c.get("/config").status_code == 401  # the page wants its sign-in too
            login = c.post("/login", data={"username": "me", "password": token})
            assert login.status_code == 200 and c.get("/config").status_code == 200
    finally:
        srv.close()
    assert not list((tmp_path / "runs").glob("*/*/input"))


def test_a_killed_server_restarted_on_the_same_folder_resumes_its_job(model_dir, photo, tmp_path):
    from img2mesh.web import start

    out, port = tmp_path / "runs", free_port()
    slow = [*FAST, "recon.steps=60"]  # long enough to be killed in recon
    proc = subprocess.Popen([sys.executable, "-m", "img2mesh", "serve", "--port", str(port), "--model",
                             str(model_dir), "-c", "cpu", "--out", str(out), "--quiet", *slow],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("img2mesh web app:"):
                break
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            job_id = submit(c, photo).json()["id"]
            deadline = time.monotonic() + 300
            while (state := c.get(f"/api/jobs/{job_id}").json())["stage"] != "recon":
                assert state["status"] in ("queued", "running") and time.monotonic() < deadline, state
                time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    (run,) = [p.parent for p in out.glob("*/*/input")]
    views_finished = json.loads((run / "run.json").read_text())["stages"]["views"]["finished"]

    quiet = is_quiet()
    set_quiet(True)
    srv = start(out=out, port=free_port(), model=str(model_dir), preset="cpu", overrides=FAST, quiet=True)
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            (listed,) = c.get("/api/jobs").json()["jobs"]
            assert listed["id"] == job_id and listed["status"] == "interrupted"
            assert [k for k, v in listed["progress"].items() if v["state"] == "done"] == ["preprocess", "views"]
            assert c.get(f"/api/jobs/{job_id}/files/mesh.glb").status_code == 409
            assert c.post(f"/api/jobs/{job_id}/resume").status_code == 202
            state = wait_for(c, job_id)
            assert state["status"] == "done", state
            assert len(trimesh.load(io.BytesIO(c.get(f"/api/jobs/{job_id}/files/mesh.glb").content),
                                    file_type="glb", force="mesh").faces) > 100
        meta = json.loads((run / "run.json").read_text())
        assert meta["stages"]["views"]["finished"] == views_finished  # not redone
        assert "steps: 60" in (run / "config.yaml").read_text()  # the job's own settings, not the new server's
    finally:
        srv.close()
        set_quiet(quiet)
