"""The `img2mesh` command line.

Exit codes: 0 success; 1 internal error (a bug: traceback printed); 2 bad input or usage;
3 a required resource is missing (model weights, scene, background-removal model); 4 a capability is not
available here (e.g. CUDA requested without a GPU); 130 interrupted (resume with --resume RUN_DIR).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from img2mesh.data.errors import Img2MeshError, InputError

log = logging.getLogger("img2mesh")

EPILOG = "Trailing key=value arguments override the config, e.g. `seed=1 recon.steps=500 diffusion.num_views=12`."


def _common(p: argparse.ArgumentParser, config: bool = True, out_help: str = "run directory to create") -> None:
    p.add_argument("--out", type=Path, help=out_help)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or info messages")
    p.add_argument("--verbose", "-v", action="store_true", help="debug messages")
    if config:
        p.add_argument("--config", "-c", help="preset name (default, cpu) or a YAML file")
        p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                       help="continue a run: stages whose outputs are intact are skipped")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def _input_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--scene", help="scene name (see `img2mesh scenes`) or scene folder")
    src.add_argument("--image", type=Path, help="an image of one object (PNG/JPEG/WebP; alpha used if present)")
    p.add_argument("--scene-root", type=Path, help="folder searched first for --scene")
    p.add_argument("--elevation", type=float, help="--image only: camera elevation in degrees (default 0)")
    p.add_argument("--fov", type=float, help="--image only: horizontal field of view in degrees (default 49.1)")
    p.add_argument("--model", help="Zero-1-to-3 weights: hub id, diffusers folder or LDM .ckpt "
                                   "(default kxic/zero123-xl)")


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
    _common(p, out_help="the run directory to export (same as RUN_DIR)")
    p = sub.add_parser("scenes", help="list the scenes --scene can use and where they come from")
    p.add_argument("--scene-root", type=Path, help="folder searched first")
    _common(p, config=False, out_help="also write the list as scenes.json into this folder")
    return parser


def _setup_logging(quiet: bool, verbose: bool) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = RichHandler(show_time=False, show_path=False, markup=False)
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
    return extra


def cmd_run(args, stop_after: str) -> int:
    from img2mesh.api import describe, run

    if args.scene is None and args.image is None and args.resume is None:
        raise InputError("give --scene NAME or --image PATH (or --resume RUN_DIR)")
    source, kind = (args.image, "image") if args.image is not None else (args.scene, "scene")
    result = run(source, config=args.config, overrides=[*args.overrides, *_camera_overrides(args)], out=args.out,
                 resume=args.resume, scene_root=args.scene_root, stop_after=stop_after, quiet=args.quiet,
                 kind=kind)
    print(describe(result))
    return 0


def cmd_recon(args) -> int:
    from img2mesh.api import describe, reconstruct_views

    if args.views is None:
        raise InputError("give --views DIR, a folder with transforms.json and RGBA images")
    result = reconstruct_views(args.views, config=args.config, overrides=args.overrides, out=args.out,
                               resume=args.resume, quiet=args.quiet)
    print(describe(result))
    return 0


def cmd_export(args) -> int:
    from img2mesh.api import describe, export_run

    run_dir = args.run_dir or args.out or args.resume
    if run_dir is None:
        raise InputError("give the run directory to export: img2mesh export RUN_DIR")
    print(describe(export_run(run_dir, config=args.config, overrides=args.overrides, quiet=args.quiet)))
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


COMMANDS = {
    "run": lambda a: cmd_run(a, "export"),
    "views": lambda a: cmd_run(a, "views"),
    "recon": cmd_recon,
    "export": cmd_export,
    "scenes": cmd_scenes,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.quiet, args.verbose)
    try:
        return COMMANDS[args.command](args)
    except Img2MeshError as e:
        print(f"img2mesh: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("img2mesh: interrupted; finished stages are kept: continue with --resume RUN_DIR", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
