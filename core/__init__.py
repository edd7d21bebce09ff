"""The base layer every part of m3cvcav may import: errors (``errors``), logging (``log``), atomic outputs
(``atomic``), picture quality (``quality``: MS-SSIM, PSNR) and the version. It imports no other part."""
from __future__ import annotations

from importlib import resources as _resources

__version__ = _resources.files(__name__).joinpath("VERSION").read_text().strip()
