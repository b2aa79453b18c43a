"""sensor_msgs/Image and CompressedImage payloads <-> numpy, without ROS.

Shared by the rosbag2 reader (messages deserialised by ``rosbags``) and the ROS node (live rclpy
messages): both pass the message fields, so the bytes are decoded the same way everywhere.
"""

from __future__ import annotations

import io

import numpy as np

COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
_DEPTH_DTYPE = {"16UC1": np.uint16, "mono16": np.uint16, "32FC1": np.float32}
_RAW = {"rgb8": ("u1", 3), "mono8": ("u1", 1), "mono16": ("u2", 1), "32FC1": ("f4", 1)}
"""Encodings stored value for value (results: images, label images, scores, metric depth)."""


class ImageDecodeError(ValueError):
    """Image bytes that do not match their declared encoding and size; ``reason`` names the check."""

    def __init__(self, message: str, reason: str = "decode"):
        super().__init__(message)
        self.reason = reason


def _as_bytes_array(data) -> np.ndarray:
    """uint8 view of bytes / bytearray / array.array / numpy (rosbags) / list payloads."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        return np.frombuffer(bytes(data), dtype=np.uint8)


def _rows(height: int, width: int, step: int, data, bytes_per_pixel: int, encoding: str) -> np.ndarray:
    """(height, width*bpp) uint8 view of the payload, dropping any row padding."""
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"{encoding} image has invalid size {width}x{height}")
    buf = _as_bytes_array(data)
    if buf.size == 0:
        raise ImageDecodeError(f"{encoding} image {width}x{height} has empty data")
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise ImageDecodeError(
            f"{encoding} image {width}x{height}: step {step} is smaller than "
            f"width x {bytes_per_pixel} bytes = {row_bytes}"
        )
    if buf.size < step * (height - 1) + row_bytes:
        raise ImageDecodeError(
            f"{encoding} image {width}x{height} (step {step}) needs {step * height} bytes, got {buf.size}"
        )
    if buf.size > step * height:
        raise ImageDecodeError(
            f"{encoding} image {width}x{height} (step {step}) needs {step * height} bytes, got {buf.size}"
        )
    padded = np.zeros(step * height, np.uint8) if buf.size < step * height else None
    if padded is not None:  # last row may omit its padding
        padded[: buf.size] = buf
        buf = padded
    return buf.reshape(height, step)[:, :row_bytes]


def decode_image(
    encoding: str, height: int, width: int, step: int, data, is_bigendian: int = 0
) -> np.ndarray:
    """Colour encodings -> HxWx3 uint8 RGB; depth encodings (16UC1/mono16 mm, 32FC1 m) -> HxW float32 m."""
    if encoding in DEPTH_ENCODINGS:
        return decode_depth(encoding, height, width, step, data, is_bigendian)
    if encoding not in _CHANNELS:
        raise ImageDecodeError(
            f"unsupported image encoding '{encoding}' "
            f"(supported: {', '.join(COLOUR_ENCODINGS + DEPTH_ENCODINGS)})"
        )
    ch = _CHANNELS[encoding]
    px = _rows(height, width, step, data, ch, encoding).reshape(height, width, ch)
    if encoding == "mono8":
        return np.repeat(px, 3, axis=2)
    if encoding in ("bgr8", "bgra8"):
        px = px[:, :, [2, 1, 0]]
    return np.ascontiguousarray(px[:, :, :3])


def decode_raw(encoding: str, height: int, width: int, step: int, data, is_bigendian: int = 0
               ) -> np.ndarray:
    """The stored values as they are, no unit or colour conversion: rgb8 -> HxWx3 uint8, mono8 -> HxW
    uint8 (label images), mono16 -> HxW uint16, 32FC1 -> HxW float32 (what ``encode_raw`` wrote)."""
    if encoding not in _RAW:
        raise ImageDecodeError(f"unsupported encoding '{encoding}' (raw: {', '.join(_RAW)})")
    code, channels = _RAW[encoding]
    dtype = np.dtype(code).newbyteorder(">" if is_bigendian else "<")
    rows = _rows(height, width, step, data, channels * dtype.itemsize, encoding)
    array = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
    return array[..., 0] if channels == 1 else array


def decode_mono8(height: int, width: int, step: int, data) -> np.ndarray:
    """mono8 -> HxW uint8 as is (label images)."""
    return decode_raw("mono8", height, width, step, data)


def decode_depth(
    encoding: str, height: int, width: int, step: int, data, is_bigendian: int = 0
) -> np.ndarray:
    """Depth image -> HxW float32 metres (16UC1/mono16 are millimetres; 0 stays 0 = no measurement)."""
    if encoding not in _DEPTH_DTYPE:
        raise ImageDecodeError(
            f"unsupported depth encoding '{encoding}' (supported: {', '.join(DEPTH_ENCODINGS)})"
        )
    dtype = np.dtype(_DEPTH_DTYPE[encoding]).newbyteorder(">" if is_bigendian else "<")
    raw = _rows(height, width, step, data, dtype.itemsize, encoding)
    values = np.ascontiguousarray(raw).view(dtype).reshape(height, width)
    if encoding == "32FC1":
        return values.astype(np.float32)
    return (values.astype(np.float32) / 1000.0).astype(np.float32)


def decode_compressed(format: str, data, max_pixels: int | None = None,
                      expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """CompressedImage (jpeg/png; the format string as image_transport writes it) -> HxWx3 uint8 RGB.

    Decoding has a budget: the size is read from the header (PIL's ``Image.open`` is lazy) and checked
    against ``max_pixels`` and ``expected_size`` (width, height: the camera_info) before a single pixel
    is decoded, so a 78 KB PNG that claims 9000x9000 costs nothing. PIL's own decompression-bomb
    guard is a clear ``decompression_bomb`` error too (its warning is raised as one).
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    payload = _as_bytes_array(data).tobytes()
    if not payload:
        raise ImageDecodeError(f"compressed image ('{format}') has empty data")
    fmt = format.lower()
    if "compresseddepth" in fmt:
        raise ImageDecodeError(f"compressedDepth images are not supported (format '{format}')")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(payload)) as img:
                if img.format not in ("JPEG", "PNG"):
                    raise ImageDecodeError(
                        f"compressed image is {img.format}, expected jpeg or png ('{format}')"
                    )
                _check_budget(img.size, len(payload), max_pixels, expected_size)
                img.load()
                return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(
            f"compressed image ('{format}', {len(payload)} bytes) is a decompression bomb: {exc}",
            reason="decompression_bomb",
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageDecodeError(
            f"cannot decode compressed image ('{format}', {len(payload)} bytes): {exc}"
        ) from None


def _check_budget(size: tuple[int, int], n_bytes: int, max_pixels: int | None,
                  expected_size: tuple[int, int] | None) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(
            f"compressed image ({n_bytes} bytes) claims {width}x{height} = {width * height} pixels, "
            f"more than input.max_image_pixels={max_pixels}: not decoded",
            reason="image_too_large",
        )
    if expected_size is not None and (width, height) != tuple(expected_size):
        raise ImageDecodeError(
            f"compressed image is {width}x{height} but camera_info says "
            f"{expected_size[0]}x{expected_size[1]}: not decoded",
            reason="image_size_mismatch",
        )


# ------------------------------------------------------------------------------------------------
# Encoders (writers and publishers): (encoding, step, data bytes)


def encode_raw(array: np.ndarray, encoding: str) -> tuple[str, int, bytes]:
    """HxWx3 (rgb8) or HxW (mono8, mono16, 32FC1) values, cast to the encoding's little-endian type,
    stored as they are (no unit conversion); rows unpadded."""
    if encoding not in _RAW:
        raise ImageDecodeError(f"unsupported output encoding '{encoding}' (raw: {', '.join(_RAW)})")
    code, channels = _RAW[encoding]
    array = np.ascontiguousarray(array, dtype=np.dtype(code).newbyteorder("<"))
    shape_ok = array.ndim == 3 and array.shape[2] == 3 if channels == 3 else array.ndim == 2
    if not shape_ok:
        raise ImageDecodeError(f"{encoding} needs a {'HxWx3' if channels == 3 else 'HxW'} array, "
                               f"got {array.shape}")
    return encoding, int(array.strides[0]), array.tobytes()


def encode_rgb8(rgb: np.ndarray) -> tuple[str, int, bytes]:
    return encode_raw(rgb, "rgb8")


def encode_mono8(img: np.ndarray) -> tuple[str, int, bytes]:
    return encode_raw(img, "mono8")


def encode_depth(depth_m: np.ndarray, encoding: str = "32FC1") -> tuple[str, int, bytes]:
    """HxW metres -> 32FC1 (metres) or 16UC1 (millimetres, rounded; out of range or NaN -> 0)."""
    depth_m = np.asarray(depth_m)
    if depth_m.ndim != 2:
        raise ImageDecodeError(f"depth needs HxW, got {depth_m.shape}")
    if encoding == "32FC1":
        return encoding, depth_m.shape[1] * 4, np.ascontiguousarray(depth_m, dtype="<f4").tobytes()
    if encoding == "16UC1":
        return encoding, depth_m.shape[1] * 2, depth_to_mm(depth_m).astype("<u2").tobytes()
    raise ImageDecodeError(f"cannot encode depth as '{encoding}' (use 32FC1 or 16UC1)")


def depth_to_mm(depth_m: np.ndarray) -> np.ndarray:
    """HxW metres -> uint16 millimetres; NaN, negative or > 65.535 m become 0 (no measurement)."""
    mm = np.round(np.nan_to_num(np.asarray(depth_m, dtype=np.float64), nan=0.0) * 1000.0)
    return np.where((mm > 0) & (mm <= 65535), mm, 0).astype(np.uint16)
