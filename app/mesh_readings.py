"""`img2mesh metrics`: which reading of the two mesh files to score, decided from evidence.

A mesh file does not say its up axis, and a reconstruction from `img2mesh render --normalize` views lives in
that render's normalised frame, not its source mesh's. Convention and provenance make the first guess (the up
axis :func:`file_up_axis` picks; the render's frame when PRED's run was made from a `render` folder whose
source is GT); every other plausible reading is scored too, with a quick Chamfer. One that scores far better
than the guess is used instead, unless both up axes were given, in which case it is only pointed out. The
relative orientation is what matters, so this holds whichever axis a run's own files are written in.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

log = logging.getLogger(__name__)

FAR_BETTER = 0.5  # a reading whose Chamfer is at most this share of another's is another frame, not noise


@dataclass(frozen=True)
class Reading:
    pred_up: str
    gt_up: str
    render_json: Path | None = None  # GT mapped into the normalised frame this render gave it

    def describe(self) -> str:
        frame = f", GT in the frame of {self.render_json}" if self.render_json else ""
        return f"PRED {self.pred_up}-up, GT {self.gt_up}-up{frame}"


def render_frame(pred: Path, gt: Path) -> tuple[Path, dict] | None:
    """(render.json, its contents) of the `render --normalize` folder PRED's run was reconstructed from, when
    GT is that render's source mesh; else None."""
    try:
        views = json.loads((pred.parent / "run.json").read_text())["source"]["views"]
        info_path = Path(views) / "render.json"
        info = json.loads(info_path.read_text())
        same = Path(info["source"]).resolve() == gt.resolve()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (info_path, info) if same and info.get("scale") else None


def _flip(up: str) -> str:
    return "z" if up == "y" else "y"


def candidate_readings(pred: Path, gt: Path, pred_up: str | None, gt_up: str | None) -> list[Reading]:
    """The first guess, then the other readings the flags leave open."""
    from img2mesh.recon.mesh.up_axis import file_up_axis

    guess = Reading(file_up_axis(pred, pred_up)[0], file_up_axis(gt, gt_up)[0])
    out = [guess]
    if pred_up is None or gt_up is not None:
        out.append(Reading(_flip(guess.pred_up), guess.gt_up))
    else:
        out.append(Reading(guess.pred_up, _flip(guess.gt_up)))
    frame = render_frame(pred, gt)
    if frame is not None and gt_up in (None, frame[1].get("up")):
        out += [Reading(up, frame[1].get("up") or "y", frame[0]) for up in
                ((guess.pred_up, _flip(guess.pred_up)) if pred_up is None else (pred_up,))]
    return out


def load_reading(pred: Path, gt: Path, reading: Reading) -> tuple[trimesh.Trimesh, trimesh.Trimesh]:
    from img2mesh.recon import load_mesh

    gt_mesh = load_mesh(gt, up=reading.gt_up)
    if reading.render_json is not None:
        info = json.loads(reading.render_json.read_text())
        gt_mesh = trimesh.Trimesh((np.asarray(gt_mesh.vertices) - np.asarray(info["center"])) * info["scale"],
                                  gt_mesh.faces, process=False)
    return load_mesh(pred, up=reading.pred_up), gt_mesh


def choose_reading(pred: Path, gt: Path, pred_up: str | None = None, gt_up: str | None = None,
                   normalize_pred: bool = False) -> tuple[Reading, dict[Reading, float]]:
    """(the reading to score, the quick Chamfer of every candidate); logs which and why."""
    from img2mesh.recon.mesh.metrics import quick_chamfer

    candidates = candidate_readings(pred, gt, pred_up, gt_up)
    scores = {r: quick_chamfer(*load_reading(pred, gt, r), normalize_pred=normalize_pred) for r in candidates}
    guess = candidates[0]
    best = min(candidates, key=lambda r: scores[r])
    fixed = pred_up is not None and gt_up is not None
    chosen = best if not fixed and scores[best] <= FAR_BETTER * scores[guess] else guess
    others = "; ".join(f"{r.describe()}: {scores[r]:.4g}" for r in candidates if r != chosen)
    log.info("scoring %s (quick Chamfer %.4g; other readings: %s)", chosen.describe(), scores[chosen], others)
    if chosen != guess:
        hint = (f"; next time compare against {chosen.render_json.parent / 'gt_mesh.ply'}, the mesh as rendered"
                if chosen.render_json else f" (--pred-up {chosen.pred_up} --gt-up {chosen.gt_up} say so)")
        log.warning("the files' conventions suggested %s, but %s scores far better (quick Chamfer %.4g against "
                    "%.4g): using it%s", guess.describe(), chosen.describe(), scores[chosen], scores[guess], hint)
    elif scores[best] <= FAR_BETTER * scores[chosen]:
        log.warning("scoring %s as given, but %s scores far better (quick Chamfer %.4g against %.4g): check "
                    "--pred-up / --gt-up", chosen.describe(), best.describe(), scores[best], scores[chosen])
    return chosen, scores


def compare_mesh_files(pred, gt, pred_up: str | None = None, gt_up: str | None = None,
                       normalize_pred: bool = False) -> dict:
    """`img2mesh metrics PRED GT`: :func:`mesh_metrics` in the reading the evidence supports, with that reading
    (``pred_up``, ``gt_up``, ``gt_frame``: the render.json whose frame GT was put in, or None)."""
    from img2mesh.recon import mesh_metrics

    pred, gt = Path(pred), Path(gt)
    chosen, _ = choose_reading(pred, gt, pred_up, gt_up, normalize_pred)
    scores = mesh_metrics(*load_reading(pred, gt, chosen), normalize_pred=normalize_pred)
    return {**scores, "pred_up": chosen.pred_up, "gt_up": chosen.gt_up,
            "gt_frame": str(chosen.render_json) if chosen.render_json else None}
