"""img2mesh: one photo of an object -> a clean 3D mesh (novel views generated, then a field fitted to them).

The four code folders install as one package: app/ is `img2mesh`, data/ is `img2mesh.data`,
diffusion/ is `img2mesh.diffusion`, recon/ is `img2mesh.recon`; configs/*.yaml ship as `img2mesh.configs`.
"""
from pathlib import Path

from setuptools import find_packages, setup

FOLDERS = {"img2mesh": "app", "img2mesh.data": "data", "img2mesh.diffusion": "diffusion", "img2mesh.recon": "recon"}


def packages_and_dirs():
    packages, dirs = [], {}
    for package, folder in FOLDERS.items():
        packages.append(package)
        dirs[package] = folder
        for sub in find_packages(folder):
            packages.append(f"{package}.{sub}")
            dirs[f"{package}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
    packages.append("img2mesh.configs")
    dirs["img2mesh.configs"] = "configs"
    return packages, dirs


packages, package_dir = packages_and_dirs()

setup(
    name="img2mesh",
    version="0.1.0",
    description="One photo of an object -> a clean 3D mesh: Zero-1-to-3 + ViewFusion views, NeuS / voxel-NeRF reconstruction",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8") if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=packages,
    package_dir=package_dir,
    package_data={"img2mesh.configs": ["*.yaml"], "img2mesh.blender_addon": ["blender_manifest.toml"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "pillow>=10",
        "omegaconf>=2.3",
        "diffusers>=0.30",
        "transformers>=4.40",
        "huggingface-hub>=0.23",
        "safetensors>=0.4",
        "accelerate>=0.30",  # low-memory, fast loading of the multi-GB Zero-1-to-3 weights
        "rembg>=2.0.50",
        "onnxruntime>=1.16",
        "trimesh>=4.0",
        "PyMCubes>=0.1.4",
        "xatlas>=0.0.9",  # UV atlas of textured exports
        "fast-simplification>=0.1.7",  # quadric decimation (export.target_faces)
        "scipy>=1.10",
        "scikit-image>=0.21",
        "open3d-cpu>=0.18; platform_machine == 'x86_64' and sys_platform == 'linux'",
        "open3d>=0.18; platform_machine != 'x86_64' or sys_platform != 'linux'",
        "imageio>=2.31",
        "imageio-ffmpeg>=0.4.9",
        "nerfacc==0.5.3",
        "rich>=13",
        "tqdm>=4.65",
    ],
    extras_require={
        "web": ["gradio>=6", "gradio_client>=2", "fastapi>=0.110", "uvicorn>=0.29"],  # `img2mesh serve`
        "ray": ["ray>=2.9"],  # `img2mesh batch --ray`
        "openvino": ["openvino>=2024.0"],  # diffusion.backend=openvino (the UNet on the CPU)
        "test": ["pytest>=8", "pytest-xdist>=3.5", "gradio>=6", "gradio_client>=2", "selenium>=4.20", "ray>=2.9",
                 "httpx>=0.27", "openvino>=2024.0"],  # (Blender's bpy: tests/blender-requirements.txt, own venv)
    },
    entry_points={"console_scripts": ["img2mesh=img2mesh.cli:main"]},
)
