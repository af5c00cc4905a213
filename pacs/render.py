"""Rendered images of stored instances: JPEG/PNG frames and thumbnails with CT window presets.

Grey-scale pixels go through the modality LUT (rescale slope/intercept) and a window (a preset, the
window stored in the instance, or the frame's own range); colour images are shown as they are.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_rescale, apply_voi_lut, apply_windowing

# CT window presets as (centre, width) in Hounsfield units.
PRESETS = {
    "brain": (40, 80), "subdural": (75, 215), "stroke": (40, 40), "lung": (-600, 1500),
    "mediastinum": (50, 350), "abdomen": (40, 400), "liver": (30, 150), "bone": (400, 1800),
}
FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png")}


class RenderError(ValueError):
    pass


def _window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    low, high = centre - width / 2, centre + width / 2
    return np.clip((values - low) / max(high - low, 1e-6), 0, 1)


def _stored_voi(values: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """The instance's own VOI (its LUT, else its window) on 0-1, scaled by the VOI's output range (not by the
    frame's min/max, which would stretch the stored window into another one)."""
    lut = ds.get("VOILUTSequence")
    if lut and lut[0].get("LUTDescriptor") and lut[0].get("LUTData"):
        low, high = 0.0, float(2 ** int(lut[0].LUTDescriptor[2]) - 1)  # what apply_voi_lut prefers
    else:
        with np.errstate(over="ignore"):  # far outside any window: the windowing's own output bounds
            low, high = (float(v) for v in apply_windowing(np.array([-1e30, 1e30]), ds))
    return np.clip((apply_voi_lut(values, ds).astype(np.float64) - low) / max(high - low, 1e-6), 0, 1)


def to_image(ds: pydicom.Dataset, frame: int = 0, preset: str | None = None,
             window: tuple[float, float] | None = None) -> Image.Image:
    if "PixelData" not in ds:
        raise RenderError("no pixel data")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not 0 <= frame < frames:
        raise RenderError(f"no frame {frame + 1}")
    try:
        pixels = ds.pixel_array
    except (NotImplementedError, RuntimeError, ValueError) as exc:
        raise RenderError(f"cannot decode pixel data: {exc}") from None
    if frames > 1:
        pixels = pixels[frame]
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        if pixels.dtype != np.uint8:
            pixels = (pixels / max(float(pixels.max()), 1.0) * 255).astype(np.uint8)
        return Image.fromarray(pixels, "RGB")
    values = apply_rescale(pixels, ds).astype(np.float64)
    if preset in PRESETS:
        scaled = _window(values, *PRESETS[preset])
    elif window is not None:
        scaled = _window(values, *window)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        scaled = _stored_voi(values, ds)
    else:
        scaled = (values - values.min()) / max(float(np.ptp(values)), 1e-6)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        scaled = 1 - scaled
    return Image.fromarray((scaled * 255).round().astype(np.uint8), "L")


def render(path: Path, *, frame: int = 0, preset: str | None = None, window: tuple[float, float] | None = None,
           size: int | None = None, fmt: str = "jpeg") -> tuple[bytes, str]:
    """The encoded image and its media type."""
    if fmt not in FORMATS:
        raise RenderError(f"unknown format {fmt}")
    image = to_image(pydicom.dcmread(path), frame, preset, window)
    if size:
        image.thumbnail((size, size))
    out = io.BytesIO()
    kind, media_type = FORMATS[fmt]
    image.save(out, kind, **({"quality": 90} if kind == "JPEG" else {}))
    return out.getvalue(), media_type
