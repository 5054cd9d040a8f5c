import cv2
import numpy as np
import pytest

from hideseek.data.decode import DecodeError, read_gray, resize_long_side, to_gray_uint8

from conftest import write_png


def test_8bit_gray_is_returned_unchanged(tmp_path):
    pixels = np.arange(64 * 48, dtype=np.uint32).reshape(64, 48).astype(np.uint8)
    assert np.array_equal(read_gray(write_png(tmp_path / "a.png", pixels)), pixels)


def test_16bit_with_12bit_content_keeps_full_contrast(tmp_path):
    pixels = np.zeros((32, 32), dtype=np.uint16)
    pixels[0, 0] = 4095  # 12-bit peak
    pixels[0, 1] = 2048
    gray = read_gray(write_png(tmp_path / "b.png", pixels))
    assert gray.dtype == np.uint8
    assert gray[0, 0] == 255 and gray[0, 1] == 128 and gray[1, 1] == 0


def test_16bit_full_range_scales_by_257(tmp_path):
    pixels = np.full((16, 16), 65535, dtype=np.uint16)
    pixels[0, 0] = 257 * 100
    gray = read_gray(write_png(tmp_path / "c.png", pixels))
    assert gray[0, 0] == 100 and gray[5, 5] == 255


def test_rgb_and_rgba_become_gray(tmp_path):
    bgr = np.zeros((20, 20, 3), dtype=np.uint8)
    bgr[..., 1] = 200  # pure green
    expected = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert np.array_equal(read_gray(write_png(tmp_path / "rgb.png", bgr)), expected)
    bgra = np.dstack([bgr, np.full((20, 20), 255, np.uint8)])
    assert np.array_equal(read_gray(write_png(tmp_path / "rgba.png", bgra)), expected)


def test_jpeg_decodes(tmp_path):
    pixels = np.full((30, 40), 120, dtype=np.uint8)
    gray = read_gray(write_png(tmp_path / "d.jpg", pixels))
    assert gray.shape == (30, 40) and abs(int(gray.mean()) - 120) <= 2


def test_corrupt_missing_and_empty_files_raise(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DecodeError, match="not a decodable image"):
        read_gray(tmp_path / "bad.png")
    with pytest.raises(DecodeError, match="empty file"):
        read_gray(tmp_path / "empty.png")
    with pytest.raises(FileNotFoundError, match="image not found"):
        read_gray(tmp_path / "nope.png")


def test_unsupported_dtype_raises():
    with pytest.raises(DecodeError):
        to_gray_uint8(np.zeros((10, 10), dtype=np.float32))


def test_resize_long_side_keeps_aspect():
    out = resize_long_side(np.zeros((300, 150), np.uint8), 140)
    assert out.shape == (140, 70)
    assert resize_long_side(np.zeros((50, 100), np.uint8), 200).shape == (100, 200)
