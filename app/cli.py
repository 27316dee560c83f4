"""The `img2mesh` command line.

Exit codes: 0 success; 1 internal error (a bug: traceback printed); 2 bad input or usage;
3 a required resource is missing (model weights, scene, background-removal model); 4 a capability is not
available here (e.g. CUDA requested without a GPU); 130 interrupted (resume with --resume RUN_DIR).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path

from img2mesh.data.errors import Img2MeshError, InputError

from .pipeline import STAGES

log = logging.getLogger("img2mesh")

EPILOG = "Trailing key=value arguments override the config, e.g. `seed=1 recon.steps=500 diffusion.num_views=12`."


NORMALIZE_PRED_HELP = ("map PRED by its own bounding box (centred, longest side 1), as GT is mapped by its own, "
                       "instead of by GT's: for reconstructions whose scale and position are arbitrary")


def _common(p: argparse.ArgumentParser, config: bool = True, out_help: str = "run directory to create",
            resume: bool = True, rerun: bool = True) -> None:
    p.add_argument("--out", type=Path, help=out_help)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or info messages")
    p.add_argument("--verbose", "-v", action="store_true", help="debug messages")
    if config:
        p.add_argument("--config", "-c", help="preset name (default, cpu, reference) or a YAML file"
                       + ("; with --resume its settings go on top of the run's saved config" if resume else ""))
        p.add_argument("--threads", type=int, metavar="N",
                       help="CPU threads for torch (config key `threads`; 0 = torch's default, one per core)")
        if resume:
            p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                           help="continue a run with its saved config (new flags go on top): stages whose outputs "
                                "are intact are skipped")
        if rerun:
            p.add_argument("--rerun", action="append", default=[], choices=STAGES, metavar="STAGE",
                           help=("with --resume: let STAGE (views or recon) and the stages after it run again when "
                                 "changed settings make a finished one out of date" if resume else
                                 "in run folders a finished batch left: let STAGE (views or recon) and the stages "
                                 "after it run again when changed settings make a finished one out of date"))
            p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def _input_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--scene", help="scene name (see `img2mesh scenes`) or scene folder")
    src.add_argument("--image", type=Path, help="an image of one object (PNG/JPEG/WebP; alpha used if present)")
    p.add_argument("--scene-root", type=Path, help="folder searched first for --scene")
    p.add_argument("--elevation", type=float, help="--image only: camera elevation in degrees (default 0)")
    p.add_argument("--fov", type=float, help="--image only: horizontal field of view in degrees (default 49.1)")
    p.add_argument("--model", help="Zero-1-to-3 weights (hub id, diffusers folder or LDM .ckpt; default "
                                   "kxic/zero123-xl) or SyncDreamer's (converted folder, .ckpt or hub repo)")
    p.add_argument("--clip", help="with a SyncDreamer .ckpt as --model: its CLIP archive ViT-L-14.pt "
                                  "(default: the one beside the .ckpt)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="img2mesh", description="One photo of an object -> a clean 3D mesh.",
                                     epilog=EPILOG)
    from img2mesh import __version__

    parser.add_argument("--version", action="version", version=f"img2mesh {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="image -> views -> reconstruction -> mesh files", epilog=EPILOG)
    _input_args(p)
    _common(p)
    p = sub.add_parser("views", help="stop after generating the novel views", epilog=EPILOG)
    _input_args(p)
    _common(p)
    p = sub.add_parser("recon", help="reconstruct + export from a folder of posed views (NeRF format)",
                       epilog=EPILOG)
    p.add_argument("--views", type=Path, help="views folder with transforms.json and RGBA images")
    _common(p)
    p = sub.add_parser("export", help="(re)mesh and export a run's trained field", epilog=EPILOG)
    p.add_argument("run_dir", nargs="?", type=Path, metavar="RUN_DIR", help="the run (or --out RUN_DIR)")
    _common(p, out_help="the run directory to export (same as RUN_DIR)", resume=False, rerun=False)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p = sub.add_parser("batch", help="one run per image of a folder, glob or list, here or on a Ray cluster",
                       epilog=EPILOG)
    p.add_argument("inputs", metavar="INPUTS", help="a folder of images, a quoted glob, or a .txt / .csv list "
                                                    "(image[,elevation] per line)")
    p.add_argument("--ray", metavar="ADDRESS", help="run on Ray: auto (the cluster `ray start` made here), "
                                                    "local (a private instance) or the head's host:port")
    p.add_argument("--elevation", type=float, help="camera elevation in degrees of images the list gives none")
    p.add_argument("--model", help="Zero-1-to-3 weights: hub id, diffusers folder or LDM .ckpt")
    _common(p, out_help="batch folder: one run folder per image and summary.csv", resume=False)
    p = sub.add_parser("demo", help="the whole chain in about a minute with a tiny random model, no download "
                                    "(checks an installation; the views are noise)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (0 = torch's default)")
    _common(p, config=False, out_help="run directory to create (default runs/demo/<time>)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p = sub.add_parser("scenes", help="list the scenes --scene can use and where they come from")
    p.add_argument("--scene-root", type=Path, help="folder searched first")
    _common(p, config=False, out_help="also write the list as scenes.json into this folder")

    p = sub.add_parser("convert", help="convert an original Zero-1-to-3 or SyncDreamer .ckpt into a model folder")
    p.add_argument("ckpt", type=Path, help="zero123-xl.ckpt, 105000.ckpt, ... (or .safetensors); "
                                           "syncdreamer-pretrain.ckpt (with --clip)")
    p.add_argument("out_dir", nargs="?", type=Path, help="folder to write (or --out)")
    p.add_argument("--original-config", type=Path, metavar="YAML",
                   help="the LDM config the checkpoint was trained with (default: CKPT's name with .yaml beside it "
                        "if present, else Zero-1-to-3's sd-objaverse-finetune-c_concat-256.yaml values; "
                        "SyncDreamer: its configs/syncdreamer.yaml, else the tensors' sizes with 8 heads)")
    p.add_argument("--clip", type=Path, metavar="VIT.pt", help="SyncDreamer only: OpenAI's CLIP archive ViT-L-14.pt")
    p.add_argument("--volume-size", type=int, default=32, help="SyncDreamer only: spatial volume voxels per side")
    p.add_argument("--frustum-depth", type=int, default=48, help="SyncDreamer only: depth samples per view frustum")
    _common(p, config=False, out_help="folder to write")

    p = sub.add_parser("render", help="render a mesh into a views folder (+ depth and normal maps)")
    p.add_argument("mesh", type=Path, help="OBJ / PLY / GLB")
    p.add_argument("--layout", default="ring36", help="ringN, syncdreamer16, or a cameras JSON (default ring36)")
    p.add_argument("--elevation", type=float, default=20.0, help="degrees, for ringN (default 20)")
    p.add_argument("--radius", type=float, default=2.0, help="camera distance for ringN (default 2)")
    p.add_argument("--fov", type=float, default=49.1, help="horizontal FoV in degrees for ringN (default 49.1)")
    p.add_argument("--size", type=int, default=256, help="image size in pixels (default 256)")
    p.add_argument("--up", choices=("y", "z"), help="the file's up axis (default: z for img2mesh's own outputs, "
                                                   "y otherwise, as OBJ, PLY and GLB files usually are)")
    p.add_argument("--normalize", type=float, metavar="SIZE",
                   help="centre the mesh and scale its longest side to SIZE first (e.g. 1.0)")
    _common(p, config=False, out_help="views folder to write")

    p = sub.add_parser("metrics", help="Chamfer, F-score and volume IoU of a mesh against ground truth")
    p.add_argument("pred", type=Path)
    p.add_argument("gt", type=Path)
    p.add_argument("--pred-up", choices=("y", "z"), help="up axis of PRED (default: decided by scoring both "
                                                         "readings; the files' conventions are the first guess)")
    p.add_argument("--gt-up", choices=("y", "z"), help="up axis of GT (default: decided by scoring both readings)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--normalize-pred", action="store_true", help=NORMALIZE_PRED_HELP)
    _common(p, config=False, out_help="also write metrics.json into this folder")

    p = sub.add_parser("eval", help="evaluation: `eval nvs` (against ground truth), `eval consistency`")
    ev = p.add_subparsers(dest="eval_command", required=True, metavar="WHAT")
    q = ev.add_parser("nvs", help="novel-view PSNR/SSIM/LPIPS on ground-truth meshes", epilog=EPILOG)
    q.add_argument("--objects", type=Path, required=True, help="folder of GT objects (<name>/meshes/model.obj, *.obj)")
    q.add_argument("--only", nargs="+", default=[], metavar="NAME", help="evaluate only these objects")
    q.add_argument("--layout", default="syncdreamer16", help="syncdreamer16 (default), ringN, or a cameras JSON")
    q.add_argument("--elevation", type=float, default=30.0, help="ringN elevation (default 30)")
    q.add_argument("--input-index", type=int, default=0, help="which layout view is the input (default 0)")
    q.add_argument("--size", type=int, default=256, help="image size in px (default 256, Zero-1-to-3's)")
    q.add_argument("--up", choices=("y", "z"), default="y", help="up axis of the mesh files (default y)")
    q.add_argument("--model", help="Zero-1-to-3 weights (hub id, folder or .ckpt)")
    _common(q, out_help="report folder to create", resume=False, rerun=False)
    q = ev.add_parser("consistency", help="3D consistency of a views folder: held-out re-render PSNR/SSIM",
                      epilog=EPILOG)
    q.add_argument("views_dir", type=Path, metavar="VIEWS_DIR")
    _common(q, out_help="report folder to create", resume=False, rerun=False)

    p = sub.add_parser("blender-addon", help="write the Blender add-on (an installable zip) into --out",
                       epilog=EPILOG)
    _common(p, config=False, out_help="folder to write img2mesh_blender-VERSION.zip into (default .)")

    p = sub.add_parser("serve", help="the web app: a photo in the browser -> views, mesh, downloads", epilog=EPILOG)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--model", help="Zero-1-to-3 weights, loaded once for every request (default the config's)")
    p.add_argument("--concurrency", type=int, default=1, help="runs at the same time (default 1: one GPU job)")
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload in MB (default 25)")
    p.add_argument("--scene-root", type=Path, help="folder searched first for scenes")
    p.add_argument("--max-queue", type=int, default=8,
                   help="jobs that may wait for a slot (default 8); beyond it the REST API answers 429")
    p.add_argument("--token", help="the token REST clients send (Authorization: Bearer) and the page's password "
                                   "(default $IMG2MESH_TOKEN); required off 127.0.0.1 unless --no-auth")
    p.add_argument("--no-auth", action="store_true", help="serve off 127.0.0.1 without a token (a trusted network)")
    _common(p, out_help="folder the runs are written into (default runs/web)", resume=False, rerun=False)
    return parser


# The flags' own ranges, checked before anything is loaded: (flag, attribute, accepted, what the range is).
FLAG_RANGES = (
    ("--elevation", "elevation", lambda v: -90.0 <= v <= 90.0, "in [-90, 90] degrees"),
    ("--fov", "fov", lambda v: 0.0 < v < 180.0, "in (0, 180) degrees"),
    ("--radius", "radius", lambda v: v > 0.0, "positive"),
    ("--size", "size", lambda v: v >= 16, "at least 16 pixels"),
    ("--normalize", "normalize", lambda v: v > 0.0, "a positive size"),
    ("--input-index", "input_index", lambda v: v >= 0, "0 or more"),
    ("--threads", "threads", lambda v: v >= 0, "a number >= 0 (0: torch's default)"),
    ("--port", "port", lambda v: 1 <= v <= 65535, "in [1, 65535]"),
    ("--concurrency", "concurrency", lambda v: v >= 1, "at least 1"),
    ("--max-upload-mb", "max_upload_mb", lambda v: v > 0.0, "positive"),
)


def check_flags(args) -> None:
    """Refuse a flag outside its range at once (exit 2), instead of a run that quietly means something else."""
    import math

    for flag, attr, accepted, what in FLAG_RANGES:
        value = getattr(args, attr, None)
        if value is not None and not (math.isfinite(value) and accepted(value)):
            raise InputError(f"{flag}={value:g}: must be {what}")  # the form config keys' checks use
    if getattr(args, "rerun", None) and hasattr(args, "resume") and args.resume is None:
        raise InputError("--rerun applies to an existing run: give it with --resume RUN_DIR "
                         "(a new run computes every stage anyway)")


def _setup_logging(quiet: bool, verbose: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    # stderr: stdout carries the results (`--json`, metrics) that scripts read
    handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=False, markup=False)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    for noisy in ("PIL", "urllib3", "numba", "matplotlib", "httpx", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _camera_overrides(args) -> list[str]:
    extra = []
    if args.elevation is not None or args.fov is not None:
        if args.image is None:
            raise InputError("--elevation and --fov apply to --image inputs; a scene carries its own camera")
        if args.elevation is not None:
            extra.append(f"data.elevation={args.elevation}")
        if args.fov is not None:
            extra.append(f"data.fov_deg={args.fov}")
    if args.model:
        extra.append(f"diffusion.model={args.model}")
    if getattr(args, "clip", None):
        extra.append(f"diffusion.syncdreamer.clip={args.clip}")
    return extra


def _overrides(args, extra=()) -> list[str]:
    """The trailing key=value overrides, then the flags that stand for config keys."""
    return [*args.overrides, *extra, *([f"threads={args.threads}"] if args.threads is not None else [])]


def _print_result(args, result) -> None:
    from img2mesh.api import describe, summary

    print(describe(result) if args.json else summary(result))


def cmd_run(args, stop_after: str) -> int:
    from img2mesh.api import run

    if args.scene is None and args.image is None and args.resume is None:
        raise InputError("give --scene NAME or --image PATH (or --resume RUN_DIR)")
    source, kind = (args.image, "image") if args.image is not None else (args.scene, "scene")
    result = run(source, config=args.config, overrides=_overrides(args, _camera_overrides(args)), out=args.out,
                 resume=args.resume, scene_root=args.scene_root, stop_after=stop_after, quiet=args.quiet,
                 kind=kind, rerun=args.rerun)
    _print_result(args, result)
    return 0


def cmd_recon(args) -> int:
    from img2mesh.api import reconstruct_views

    if args.views is None:
        raise InputError("give --views DIR, a folder with transforms.json and RGBA images")
    result = reconstruct_views(args.views, config=args.config, overrides=_overrides(args), out=args.out,
                               resume=args.resume, quiet=args.quiet, rerun=args.rerun)
    _print_result(args, result)
    return 0


def cmd_export(args) -> int:
    from img2mesh.api import export_run

    run_dir = args.run_dir or args.out
    if run_dir is None:
        raise InputError("give the run directory to export: img2mesh export RUN_DIR")
    _print_result(args, export_run(run_dir, config=args.config, overrides=_overrides(args), quiet=args.quiet))
    return 0


def cmd_batch(args) -> int:
    from img2mesh.batch import run_batch

    extra = [*([f"data.elevation={args.elevation}"] if args.elevation is not None else []),
             *([f"diffusion.model={args.model}"] if args.model else [])]
    result = run_batch(args.inputs, args.out, config=args.config, overrides=_overrides(args, extra), ray=args.ray,
                       quiet=args.quiet, rerun=args.rerun)
    done = len(result.rows) - len(result.failed)
    if args.json:
        print(json.dumps({"out": str(result.out), "seconds": result.seconds, "rows": result.rows}, indent=2))
    else:
        print(f"{done} of {len(result.rows)} images done in {result.seconds:.1f} s: {result.summary}")
    if result.failed:
        first = result.failed[0]
        print(f"img2mesh: error: {len(result.failed)} image(s) failed, e.g. {first['run']}: {first['error']} "
              f"(all in {result.summary}; run the same command again to retry them)", file=sys.stderr)
    return result.exit_code


def cmd_demo(args) -> int:
    from .demo import NOTICE, run_demo

    result = run_demo(args.out, quiet=args.quiet, threads=args.threads)
    _print_result(args, result)
    if not args.json:
        print(f"note: {NOTICE}")
    return 0


def cmd_scenes(args) -> int:
    from img2mesh.data.io import atomic_write_text
    from img2mesh.data.scenes import list_scenes

    rows = list_scenes(args.scene_root)
    for name, source, path in rows:
        print(f"{name:<16} {source:<16} {path if path else '(downloaded on first use)'}")
    if args.out:
        atomic_write_text(Path(args.out) / "scenes.json", json.dumps(
            [{"name": n, "source": s, "path": str(p) if p else None} for n, s, p in rows], indent=2))
    return 0


def cmd_convert(args) -> int:
    from img2mesh.diffusion import convert_checkpoint

    out = args.out_dir or args.out
    if out is None:
        raise InputError("give the folder to write: img2mesh convert CKPT OUT")
    from img2mesh.diffusion.syncdreamer.loading import checkpoint_is_syncdreamer

    if args.ckpt.is_file() and checkpoint_is_syncdreamer(args.ckpt):
        from img2mesh.diffusion.syncdreamer import convert_checkpoint as convert_syncdreamer

        print(convert_syncdreamer(args.ckpt, out, clip=args.clip, original_config=args.original_config,
                                  volume_size=args.volume_size, frustum_depth=args.frustum_depth))
        return 0
    print(convert_checkpoint(args.ckpt, out, original_config=args.original_config))
    return 0


def cmd_render(args) -> int:
    import math

    from img2mesh.data.cameras import camera_layout
    from img2mesh.recon import render_mesh_to_folder

    from .rundir import check_new_folder

    if args.out is None:
        raise InputError("give the folder to write with --out DIR")
    check_new_folder(args.out, "choose another --out")
    cams = camera_layout(args.layout, elevation=args.elevation, radius=args.radius, fov_x=math.radians(args.fov),
                         size=args.size)
    views = render_mesh_to_folder(args.mesh, args.out, cams, up=args.up, normalize=args.normalize)
    print(f"{len(views)} views of {args.mesh} -> {args.out}")
    return 0


def cmd_metrics(args) -> int:
    from img2mesh.data.io import atomic_write_text

    from .mesh_readings import compare_mesh_files

    scores = compare_mesh_files(args.pred, args.gt, args.pred_up, args.gt_up, args.normalize_pred)
    if args.json:
        print(json.dumps(scores, indent=2))
    else:
        for key in ("chamfer", "fscore", "iou"):
            print(f"{key:<8} {scores[key]:.6f}")
        print(f"reading  PRED {scores['pred_up']}-up, GT {scores['gt_up']}-up"
              + (f" in the frame of {scores['gt_frame']}" if scores["gt_frame"] else ""))
    if args.out:
        atomic_write_text(Path(args.out) / "metrics.json", json.dumps(scores, indent=2))
    return 0


def cmd_eval(args) -> int:
    from img2mesh.api import eval_consistency, eval_nvs

    if args.eval_command == "nvs":
        overrides = _overrides(args, [f"diffusion.model={args.model}"] if args.model else [])
        print(eval_nvs(args.objects, config=args.config, overrides=overrides, out=args.out, layout=args.layout,
                       elevation=args.elevation, input_index=args.input_index, up=args.up, objects=args.only, size=args.size,
                       quiet=args.quiet))
    else:
        print(eval_consistency(args.views_dir, config=args.config, overrides=_overrides(args), out=args.out,
                               quiet=args.quiet))
    return 0


def cmd_serve(args) -> int:
    from img2mesh.web import DEFAULT_OUT, serve

    return serve(out=args.out or DEFAULT_OUT, host=args.host, port=args.port, model=args.model, preset=args.config,
                 overrides=args.overrides, concurrency=args.concurrency, max_upload_mb=args.max_upload_mb,
                 scene_root=args.scene_root, quiet=args.quiet, token=args.token, no_auth=args.no_auth,
                 max_queue=args.max_queue)


def cmd_blender_addon(args) -> int:
    from img2mesh.addon import build_addon

    path = build_addon(args.out or Path("."))
    print(f"{path}: in Blender, Edit > Preferences > Get Extensions > Install from Disk (or drag it onto Blender)")
    return 0


COMMANDS = {
    "run": lambda a: cmd_run(a, "export"),
    "views": lambda a: cmd_run(a, "views"),
    "recon": cmd_recon,
    "export": cmd_export,
    "batch": cmd_batch,
    "demo": cmd_demo,
    "scenes": cmd_scenes,
    "convert": cmd_convert,
    "render": cmd_render,
    "metrics": cmd_metrics,
    "eval": cmd_eval,
    "serve": cmd_serve,
    "blender-addon": cmd_blender_addon,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse takes trailing positionals only right after the first one (`eval consistency DIR --out X k=v`
    # would leave k=v over): collect key=value leftovers as overrides, refuse anything else.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _setup_logging(args.quiet, args.verbose)
    from img2mesh.data.progress import set_quiet

    set_quiet(args.quiet)
    try:
        check_flags(args)
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except BrokenPipeError:  # `img2mesh scenes | head`: the reader has gone; say nothing more to it
        try:  # Python flushes stdout again at exit: point it at /dev/null so that is quiet too
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # a stdout with no file descriptor (captured)
            pass
        return 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left
    except Img2MeshError as e:
        print(f"img2mesh: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        from img2mesh.data.progress import close_bars

        close_bars()  # the message starts on a line of its own, not after a progress bar's text
        argv = list(sys.argv[1:] if argv is None else argv)
        print(f"img2mesh: interrupted{_resume_hint(args.command, argv, getattr(e, 'run_dir', None))}",
              file=sys.stderr)
        return 130


def _resume_hint(command: str, argv: list[str], run_dir) -> str:
    """Where the finished stages are, and this command again with --resume instead of --out: a setting is saved
    only with a stage that finished under it, so the continuation repeats them all."""
    if run_dir is None:
        return "; no stage had finished, nothing was kept" if command in ("run", "views", "recon") else ""
    again, skip = [], False
    for token in argv:
        if skip or token.startswith("--out="):
            skip = False
            continue
        skip = token == "--out"
        if not skip:
            again.append(token)
    if command != "export" and "--resume" not in again and not any(t.startswith("--resume=") for t in again):
        again[again.index(command) + 1:again.index(command) + 1] = ["--resume", str(run_dir)]
    return f"; finished stages are kept in {run_dir}: continue with `{shlex.join(['img2mesh', *again])}`"
