"""Image inputs for classifiers: .npy arrays and image files, as float32 in [0, 1].

Pillow decodes PNG/JPEG/BMP/GIF (imported only when an image file is given), so classifying a
picture needs no TensorFlow. uint8 pixels are divided by 255 in one place, `to_unit_range`.
"""

from __future__ import annotations

import os

import numpy as np

from export.runtime.litert import RunnerError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def to_unit_range(pixels: np.ndarray) -> np.ndarray:
    """float32 pixels in [0, 1]: uint8 is scaled by 1/255, floats are taken as already scaled."""
    pixels = np.asarray(pixels)
    return pixels.astype(np.float32) / 255.0 if pixels.dtype == np.uint8 else pixels.astype(np.float32)


def load_images(paths: list[str], shape: tuple[int, ...]) -> tuple[np.ndarray, list[str]]:
    """Images of the model's (batch, height, width, channels) `shape` from .npy or image files, and
    a name for each ("digits.npy[3]" for the fourth image of an array)."""
    images, names = [], []
    for path in paths:
        if not os.path.isfile(path):
            raise RunnerError(f"no input file {path}; expected a .npy array or an image ({', '.join(IMAGE_SUFFIXES)})")
        if path.endswith(".npy"):
            array = _read_npy(path, shape[1:])
            names += [f"{path}[{i}]" for i in range(len(array))] if len(array) > 1 else [path]
        elif path.lower().endswith(IMAGE_SUFFIXES):
            array = _decode_image(path, shape[1:])[None]
            names.append(path)
        else:
            raise RunnerError(f"{path}: expected a .npy array or an image file ({', '.join(IMAGE_SUFFIXES)})")
        images.append(to_unit_range(_check_pixels(path, array)))
    return np.concatenate(images), names


def _check_pixels(path: str, array: np.ndarray) -> np.ndarray:
    """Pixels the model can mean something by: uint8 (or other whole numbers) in 0..255, or floats
    in [0, 1]. Floats in 0..255, NaN or 1e30 would otherwise classify silently as noise."""
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise RunnerError(f"{path} holds whole-number pixels from {array.min()} to {array.max()}; expected 0..255")
        return array.astype(np.uint8)
    if not (np.issubdtype(array.dtype, np.floating) or array.dtype == np.bool_):
        raise RunnerError(f"{path} holds {array.dtype} values; expected uint8 pixels (0..255) or floats in [0, 1]")
    if not np.all(np.isfinite(array)):
        raise RunnerError(f"{path} holds NaN or infinite pixels; expected uint8 pixels (0..255) or floats in [0, 1]")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise RunnerError(
            f"{path} holds float pixels from {array.min():.4g} to {array.max():.4g}; the model takes floats in [0, 1]: "
            "divide by 255 (or save uint8 pixels)"
        )
    return array


def _read_npy(path: str, image_shape: tuple[int, ...]) -> np.ndarray:
    """(n, height, width, channels) from an array of one image or many, with or without channels."""
    height, width, channels = image_shape
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise RunnerError(f"{path} is not a numeric .npy array ({e})") from None
    if array.ndim == 2 or array.shape[-1] != channels:
        array = array[..., None]
    if array.ndim == 3:
        array = array[None]
    if array.shape[1:] != (height, width, channels):
        raise RunnerError(f"{path} holds images of shape {array.shape[1:]}; expected ({height}, {width}, {channels})")
    return array


def _decode_image(path: str, image_shape: tuple[int, ...]) -> np.ndarray:
    """uint8 (height, width, channels): grey or RGB as the model takes, resized bilinearly if needed."""
    from PIL import Image, UnidentifiedImageError

    height, width, channels = image_shape
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image)
    except (UnidentifiedImageError, OSError):
        raise RunnerError(f"{path} is not a readable image; expected PNG, JPEG, BMP or GIF") from None
    return pixels.reshape(height, width, channels)
