"""What the server tests share: a free port, a photo, a tiny model, a REST client that polls jobs."""
import socket
import time
from pathlib import Path

from PIL import Image

FINAL = ("done", "failed", "cancelled", "interrupted")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pikachu_photo(path: Path) -> Path:
    """A photo without alpha: the pikachu scene's image on a grey background, as JPEG (rembg cuts it out)."""
    from img2mesh.data.scenes import find_scene

    with Image.open(find_scene("pikachu").image_path) as im:
        rgba = im.convert("RGBA")
    back = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
    Image.alpha_composite(back, rgba).convert("RGB").save(path, quality=92)
    return path


def tiny_model(folder: Path) -> Path:
    """The tests' tiny random Zero-1-to-3, saved as a diffusers folder (what `--model` takes)."""
    from img2mesh.diffusion import build_random_zero123

    return build_random_zero123("tiny", seed=0).save_pretrained(folder / "tiny")


def wait_for(client, job_id: str, until=FINAL, timeout: float = 300.0, seen: list | None = None) -> dict:
    """Poll a job until its status is one of ``until``; ``seen`` collects every answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(f"/api/jobs/{job_id}")
        answer.raise_for_status()
        state = answer.json()
        if seen is not None:
            seen.append(state)
        if state["status"] in until:
            return state
        assert time.monotonic() < deadline, f"job {job_id} still {state['status']} after {timeout} s: {state}"
        time.sleep(0.2)
