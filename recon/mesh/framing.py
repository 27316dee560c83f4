"""Whether a mesh sits where a set of cameras can see it (before rendering it into views)."""
from __future__ import annotations

import numpy as np
import trimesh

from img2mesh.data.cameras import Camera


def framing_problems(mesh: trimesh.Trimesh, cameras: list[Camera]) -> tuple[str | None, str | None]:
    """(error, warning) about where ``mesh`` sits for ``cameras``: an error when a camera is inside the mesh's
    bounding box (every view would be of its inside), a warning when the mesh overflows the views or fills
    under a twentieth of their width (an unnormalised mesh, in other units)."""
    lo, hi = mesh.bounds
    centre, radius = (lo + hi) / 2.0, float(np.linalg.norm(hi - lo)) / 2.0
    inside = [i for i, c in enumerate(cameras) if np.all(c.position >= lo) and np.all(c.position <= hi)]
    size = f"{float(np.max(hi - lo)):.3g} units across, centred at ({', '.join(f'{x:.3g}' for x in centre)})"
    if inside:
        return (f"{len(inside)} of {len(cameras)} cameras are inside the mesh's bounding box (the mesh is {size}): "
                "pass --normalize 1 to centre it and scale it to the cameras, or place the cameras further out"), None
    # the half-width each camera sees at the mesh's centre, against the mesh's bounding sphere
    seen = min(float(np.linalg.norm(c.position - centre)) * np.tan(c.fov_x / 2.0) for c in cameras)
    if radius > seen or radius < seen / 20.0:
        what = "overflows the views" if radius > seen else "fills under a twentieth of the views"
        return None, f"the mesh ({size}) {what}: pass --normalize 1 to fit it to the cameras"
    return None, None
