"""Load test of `img2mesh serve`'s REST API: a burst of concurrent submissions against one server, on loopback.

    python experiments/bench_api_load.py                          # 20 at once, --concurrency 1, --max-queue 8
    python experiments/bench_api_load.py --requests 20 --max-queue 19

The server is a real `img2mesh serve` process with the tests' tiny random Zero-1-to-3 and settings cut to seconds
(4 views x 2 DDIM steps, a 10-step NeuS on 32 px views, 48^3 mesh, 4-frame turntable), so the numbers measure
the server (queue, refusals, bookkeeping, memory), not the quality. Every request uploads the same photo (the
pikachu scene's image on grey, as JPEG). Accepted jobs are polled until they end; a job is lost when it was
accepted but does not end done (or failed with a reason), or is missing from GET /api/jobs. Time per job is the
wall clock from its submission to `done` (queue wait included); peak RSS is the server process's, sampled
every 0.2 s. Bounded: it stops after --timeout seconds whatever happened.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from servers import FAST, free_port, pikachu_photo, tiny_model  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--max-queue", type=int, default=8)
    p.add_argument("--timeout", type=float, default=1500.0, help="seconds before giving up (default 1500)")
    args = p.parse_args(argv)

    import httpx
    import psutil

    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    photo = pikachu_photo(tmp / "pika.jpg").read_bytes()
    model, port = tiny_model(tmp), free_port()
    server = subprocess.Popen([sys.executable, "-m", "img2mesh", "serve", "--port", str(port), "--model", str(model),
                               "-c", "cpu", "--out", str(tmp / "runs"), "--concurrency", "1", "--max-queue",
                               str(args.max_queue), "--quiet", *FAST],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, stop = [0], threading.Event()

    def sample():
        proc = psutil.Process(server.pid)
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.2)

    try:
        for line in server.stdout:
            if line.startswith("img2mesh web app:"):
                break
        threading.Thread(target=sample, daemon=True).start()
        idle_rss = psutil.Process(server.pid).memory_info().rss
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + args.timeout

        def submit(i):
            with httpx.Client(base_url=url, timeout=120) as c:
                t0 = time.monotonic()
                r = c.post("/api/jobs", files={"image": (f"photo{i}.jpg", photo)})
                return r.status_code, (r.json().get("id") if r.status_code == 202 else r.headers.get("retry-after")), t0

        with concurrent.futures.ThreadPoolExecutor(args.requests) as pool:
            answers = list(pool.map(submit, range(args.requests)))
        accepted = {job: t0 for code, job, t0 in answers if code == 202}
        refused = [a for a in answers if a[0] == 429]
        other = [a for a in answers if a[0] not in (202, 429)]
        ended, per_job = {}, []
        with httpx.Client(base_url=url, timeout=120) as c:
            while len(ended) < len(accepted) and time.monotonic() < deadline:
                for job in set(accepted) - set(ended):
                    state = c.get(f"/api/jobs/{job}").json()
                    if state["status"] not in ("queued", "running"):
                        ended[job] = state
                        per_job.append(time.monotonic() - accepted[job])
                time.sleep(0.5)
            listed = {j["id"] for j in c.get("/api/jobs").json()["jobs"]}
        end_rss = psutil.Process(server.pid).memory_info().rss
    finally:
        stop.set()
        server.terminate()
        server.communicate(timeout=60)
    finished = sum(s["status"] == "done" for s in ended.values())
    failed = sum(s["status"] == "failed" for s in ended.values())
    lost = len(accepted) - finished - failed + len(set(accepted) - listed) + len(other)
    q = statistics.quantiles(per_job, n=20) if len(per_job) >= 2 else [float("nan")] * 19
    print(f"| requests | --max-queue | finished | failed | refused (429) | lost | p50 s/job | p95 s/job | "
          "peak RSS | RSS idle -> after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.requests} | {args.max_queue} | {finished} | {failed} | {len(refused)} | {lost} | "
          f"{statistics.median(per_job) if per_job else float('nan'):.1f} | {q[18]:.1f} | {peak[0] / 2**30:.2f} GiB | "
          f"{idle_rss / 2**30:.2f} -> {end_rss / 2**30:.2f} GiB |")
    if refused:
        print(f"Retry-After of the refusals: {sorted({int(r[1]) for r in refused})} s")
    for code, detail, _ in other:
        print(f"unexpected answer {code}: {detail}")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
