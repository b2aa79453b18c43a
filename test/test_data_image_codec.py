import io

import numpy as np
import pytest
from PIL import Image

from ovs3d_ros.core.image_codec import (
    ImageDecodeError,
    decode_compressed,
    decode_depth,
    decode_image,
    decode_mono8,
    encode_depth,
    encode_rgb8,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


def padded(rows: np.ndarray, step: int) -> bytes:
    """Rows of bytes padded to ``step`` (as drivers with aligned rows write them)."""
    h = rows.shape[0]
    flat = rows.reshape(h, -1)
    out = np.zeros((h, step), np.uint8)
    out[:, : flat.shape[1]] = flat
    return out.tobytes()


@pytest.mark.parametrize(
    "encoding, pixels",
    [
        ("rgb8", RGB),
        ("bgr8", RGB[:, :, ::-1]),
        ("rgba8", np.concatenate([RGB, np.full((5, 7, 1), 9, np.uint8)], axis=2)),
        ("bgra8", np.concatenate([RGB[:, :, ::-1], np.full((5, 7, 1), 9, np.uint8)], axis=2)),
    ],
)
def test_colour_encodings_with_and_without_row_padding(encoding, pixels):
    ch = pixels.shape[2]
    for step in (7 * ch, 7 * ch + 5):
        out = decode_image(encoding, 5, 7, step, padded(pixels, step))
        assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
        np.testing.assert_array_equal(out, RGB)


def test_mono8_and_numpy_payload():
    grey = RGB[:, :, 0]
    out = decode_image("mono8", 5, 7, 7, np.frombuffer(grey.tobytes(), np.uint8))  # rosbags gives arrays
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_array_equal(decode_mono8(5, 7, 8, padded(grey, 8)), grey)


def test_depth_encodings():
    mm = RNG.integers(0, 9000, size=(4, 6)).astype(np.uint16)
    out = decode_image("16UC1", 4, 6, 12, mm.astype("<u2").tobytes())
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, mm / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(
        decode_depth("16UC1", 4, 6, 12, mm.astype(">u2").tobytes(), is_bigendian=1), mm / 1000.0, rtol=1e-6
    )
    metres = RNG.random((4, 6)).astype(np.float32) * 5
    np.testing.assert_array_equal(decode_depth("32FC1", 4, 6, 24, metres.tobytes()), metres)
    enc, step, data = encode_depth(metres, "32FC1")
    np.testing.assert_array_equal(decode_depth(enc, 4, 6, step, data), metres)
    enc, step, data = encode_depth(metres, "16UC1")
    np.testing.assert_allclose(decode_depth(enc, 4, 6, step, data), metres, atol=5e-4)
    enc, step, data = encode_rgb8(RGB)
    np.testing.assert_array_equal(decode_image(enc, 5, 7, step, data), RGB)


def test_bad_payloads_raise_clear_errors():
    with pytest.raises(ImageDecodeError, match="unsupported image encoding 'yuv422'"):
        decode_image("yuv422", 5, 7, 14, b"\0" * 70)
    with pytest.raises(ImageDecodeError, match="empty data"):
        decode_image("rgb8", 5, 7, 21, b"")
    with pytest.raises(ImageDecodeError, match="step 20 is smaller"):
        decode_image("rgb8", 5, 7, 20, b"\0" * 100)
    with pytest.raises(ImageDecodeError, match="needs 105 bytes, got 104"):
        decode_image("rgb8", 5, 7, 21, b"\0" * 104)
    with pytest.raises(ImageDecodeError, match="needs 105 bytes, got 106"):
        decode_image("rgb8", 5, 7, 21, b"\0" * 106)
    with pytest.raises(ImageDecodeError, match="invalid size"):
        decode_image("rgb8", 0, 7, 21, b"\0")
    with pytest.raises(ImageDecodeError, match="unsupported depth encoding"):
        decode_depth("rgb8", 5, 7, 21, b"\0" * 105)


def test_compressed_png_jpeg_and_garbage():
    buf = io.BytesIO()
    Image.fromarray(RGB).save(buf, format="PNG")
    np.testing.assert_array_equal(decode_compressed("png", buf.getvalue()), RGB)
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(buf, format="JPEG", quality=95)
    out = decode_compressed("rgb8; jpeg compressed bgr8", np.frombuffer(buf.getvalue(), np.uint8))
    assert out.shape == (8, 8, 3) and abs(int(out.mean()) - 120) <= 2
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        decode_compressed("jpeg", b"definitely not a jpeg")
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_compressed("jpeg", b"")


def _png_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes of valid PNG header (IHDR) that claims width x height, with a tiny IDAT."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(4096)))
            + chunk(b"IEND", b""))


def test_compressed_size_is_checked_from_the_header_before_decoding():
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(ImageDecodeError) as exc:
            decode_compressed("png", _png_claiming(9000, 9000), max_pixels=4096 * 4096)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert exc.value.reason == "image_too_large" and "9000x9000" in str(exc.value)
    assert peak < 20e6  # nothing of the 243 MB the claimed size needs was allocated
    with pytest.raises(ImageDecodeError) as exc:
        decode_compressed("png", _png_claiming(64, 48), expected_size=(40, 30))
    assert exc.value.reason == "image_size_mismatch" and "64x48" in str(exc.value)


@pytest.mark.parametrize("side", [10_000, 14_000])  # PIL's warning (> 89M px) and error (> 179M px)
def test_decompression_bombs_are_a_clear_error(side):
    with pytest.raises(ImageDecodeError) as exc:
        decode_compressed("png", _png_claiming(side, side))
    assert exc.value.reason == "decompression_bomb" and "decompression bomb" in str(exc.value)


def test_a_size_within_budget_still_decodes():
    buf = io.BytesIO()
    Image.fromarray(RGB).save(buf, format="PNG")
    h, w = RGB.shape[:2]
    out = decode_compressed("png", buf.getvalue(), max_pixels=h * w, expected_size=(w, h))
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize("encoding, array", [
    ("rgb8", np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)),
    ("mono8", np.array([[0, 7, 255], [1, 2, 3]], dtype=np.uint8)),
    ("mono16", np.array([[0, 65535, 258], [1, 2, 3]], dtype=np.uint16)),
    ("32FC1", np.array([[0.5, -1.25, np.inf], [1e-3, 2.0, 3.0]], dtype=np.float32)),
])
def test_raw_encodings_store_values_as_they_are(encoding, array):
    from ovs3d_ros.core.image_codec import decode_raw, encode_raw

    enc, step, data = encode_raw(array, encoding)
    assert enc == encoding and step * array.shape[0] == len(data) == array.nbytes
    # little-endian, row-major: what struct-by-struct packing gives
    dtype = {"rgb8": "<u1", "mono8": "<u1", "mono16": "<u2", "32FC1": "<f4"}[encoding]
    assert data == b"".join(np.asarray(v, dtype=dtype).tobytes() for v in array.reshape(-1))
    back = decode_raw(encoding, array.shape[0], array.shape[1], step, data)
    assert back.dtype == array.dtype and np.array_equal(back, array)
    # row padding and a big-endian payload decode to the same values
    padded = b"".join(data[r * step:(r + 1) * step] + b"\0" * 4 for r in range(array.shape[0]))
    assert np.array_equal(decode_raw(encoding, array.shape[0], array.shape[1], step + 4, padded), array)
    big = array.astype(np.dtype(dtype).newbyteorder(">")).tobytes()
    assert np.array_equal(decode_raw(encoding, array.shape[0], array.shape[1], step, big, 1), array)


def test_raw_encoding_refuses_wrong_shapes_and_encodings():
    from ovs3d_ros.core.image_codec import decode_raw, encode_raw

    with pytest.raises(ImageDecodeError, match="rgb8 needs a HxWx3"):
        encode_raw(np.zeros((2, 3), np.uint8), "rgb8")
    with pytest.raises(ImageDecodeError, match="unsupported output encoding 'bgr8'"):
        encode_raw(np.zeros((2, 3, 3), np.uint8), "bgr8")
    with pytest.raises(ImageDecodeError, match="needs 12 bytes, got 6"):
        decode_raw("mono16", 2, 3, 6, b"\0" * 6)
