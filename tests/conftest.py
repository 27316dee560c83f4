"""Test environment: offline, shared test data beside the checkout, deterministic torch."""
import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["IMG2MESH_OFFLINE"] = "1"
os.environ.setdefault("U2NET_HOME", str(SHARED / "models"))
os.environ.setdefault("IMG2MESH_SCENES", str(SHARED / "scenes" / "nerf_wild"))


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared test data not found at {SHARED}")
    return SHARED


@pytest.fixture(autouse=True)
def _torch_determinism():
    import torch

    torch.manual_seed(0)
    # One thread per test process: `pytest -n 2` already keeps both cores busy, and on a busy 2-core machine
    # OpenMP barriers make each small op of the tiny models cost milliseconds (measured 20-70x slower).
    torch.set_num_threads(1)
    yield


@pytest.fixture
def broken_model(tmp_path) -> Path:
    """A Zero-1-to-3 folder that looks complete (every component folder) but whose files are damaged: it passes
    the checks made before a run starts and fails when the views stage loads it."""
    from img2mesh.diffusion.zero123 import COMPONENTS

    root = tmp_path / "broken_model"
    for name in COMPONENTS:
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text("{ damaged")
    return root
