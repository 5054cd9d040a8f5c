"""DICOM pixels: real radiographs written as DICOM in many encodings decode back to their PNG.

Each DICOM is made here, with pydicom, from a shared real radiograph (256 px), so the expected
8-bit image is known: the PNG. The documented pipeline (modality LUT / rescale -> VOI LUT or
window -> MONOCHROME1 inversion -> the data set's one 8-bit rule) must give it back within one
grey level. pydicom's bundled sample files cover the encodings pydicom cannot write (JPEG-LS,
JPEG extended) and the objects that must be refused.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (JPEG2000Lossless, JPEGBaseline8Bit, MPEG2MPML, ExplicitVRLittleEndian, RLELossless,
                         generate_uid)

from hideseek.data.decode import DecodeError, decode_gray, read_gray
from hideseek.data.dicom import (INDEX_COLUMNS, decode_dicom, header_attributes, is_dicom, pixels_from_dataset,
                                 render_template)
from hideseek.io import TEXT_COLUMNS

from conftest import SHARED_REAL

DX = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
CR = "1.2.840.10008.5.1.4.1.1.1"


def real_png(index: int = 0) -> np.ndarray:
    images = sorted((SHARED_REAL / "seg" / "images").glob("*.png"))
    if not images:
        pytest.skip(f"real radiograph fixtures not found at {SHARED_REAL}")
    return cv2.imread(str(images[index]), cv2.IMREAD_GRAYSCALE)


def make_dicom(stored: np.ndarray, bits: int, photometric: str = "MONOCHROME2", sop: str = DX, signed: bool = False,
               **attributes) -> Dataset:
    """A single-frame grayscale radiograph dataset holding `stored` (uncompressed)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX" if sop == DX else "CR"
    ds.PatientID = "P0"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, int(signed)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    dtype = {(8, False): np.uint8, (16, False): np.uint16, (16, True): np.int16}[(ds.BitsAllocated, signed)]
    ds.PixelData = stored.astype(dtype).tobytes()
    return ds


def save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def exact_window(low: float, high: float) -> dict:
    """Window Center / Width (LINEAR, PS3.3 C.11.2.1.2.1) mapping `low` to black and `high` to white."""
    return dict(WindowCenter=(low + high) / 2 + 0.5, WindowWidth=high - low + 1)


def assert_within_one(decoded: np.ndarray, png: np.ndarray):
    assert decoded.dtype == np.uint8 and decoded.shape == png.shape
    assert int(np.abs(decoded.astype(int) - png.astype(int)).max()) <= 1


def test_8bit_monochrome2_is_the_png_itself(tmp_path):
    png = real_png()
    path = save(make_dicom(png, 8), tmp_path / "a.dcm")
    assert decode_gray(path).dtype == np.uint8
    assert np.array_equal(read_gray(path), png)


def test_monochrome1_without_a_window_is_inverted(tmp_path):
    png = real_png(1)
    stored = 65535 - png.astype(np.int64) * 257  # bone dark in the file: MONOCHROME1
    path = save(make_dicom(stored, 16, "MONOCHROME1"), tmp_path / "mono1.dcm")
    assert_within_one(read_gray(path), png)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_12bit_with_a_voi_window(tmp_path, photometric):
    png = real_png(2)
    stored = png.astype(np.int64) * 15 + 100  # 100..3925 of 0..4095
    if photometric == "MONOCHROME1":
        stored = 4095 - stored
    window = exact_window(stored.min(), stored.max()) if photometric == "MONOCHROME2" else exact_window(
        4095 - 3925, 4095 - 100)
    path = save(make_dicom(stored, 12, photometric, **window), tmp_path / "w12.dcm")
    gray = decode_gray(path)
    assert gray.dtype == np.uint16 and gray.max() == 65535  # the window's output: display-referred, 0..65535
    assert_within_one(read_gray(path), png)


def test_16bit_with_a_voi_window_outside_the_image(tmp_path):
    """A 16-bit image that uses 5000..56000 of its range: the window, not the bit depth, sets black and white."""
    png = real_png(3)
    stored = png.astype(np.int64) * 200 + 5000
    path = save(make_dicom(stored, 16, **exact_window(5000, 5000 + 255 * 200)), tmp_path / "w16.dcm")
    assert_within_one(read_gray(path), png)
    # without the window the same file is its raw 16-bit values, scaled by one depth: not the PNG
    raw = save(make_dicom(stored, 16), tmp_path / "raw16.dcm")
    assert np.abs(read_gray(raw).astype(int) - png).max() > 10


def test_rescale_slope_and_intercept_come_before_the_window(tmp_path):
    png = real_png(4)
    stored = png.astype(np.int64) * 15 + 100
    slope, intercept = 2.0, -1024.0
    window = exact_window(100 * slope + intercept, (100 + 255 * 15) * slope + intercept)
    window["WindowWidth"] = 255 * 15 * slope + 1
    ds = make_dicom(stored, 12, RescaleSlope=slope, RescaleIntercept=intercept, RescaleType="US", **window)
    assert_within_one(read_gray(save(ds, tmp_path / "rescaled.dcm")), png)
    # the same window read as stored values (the rescale ignored) would be far off
    wrong = make_dicom(stored, 12, **window)
    assert np.abs(read_gray(save(wrong, tmp_path / "no_rescale.dcm")).astype(int) - png).max() > 10


def test_signed_pixels_without_a_window_map_their_stored_range(tmp_path):
    png = real_png(5)
    stored = png.astype(np.int64) * 257 - 32768  # int16, -32768..32767
    path = save(make_dicom(stored, 16, signed=True), tmp_path / "signed.dcm")
    assert_within_one(read_gray(path), png)


def test_voi_lut_sequence_is_preferred_to_the_window(tmp_path):
    png = real_png(6)
    stored = png.astype(np.int64) * 15 + 100
    lut = Dataset()
    lut.add_new("LUTDescriptor", "US", [4096, 0, 16])  # 4096 entries from stored value 0, 16-bit output
    lut.add_new("LUTData", "US", (np.clip(np.rint((np.arange(4096) - 100) / 15), 0, 255) * 257).astype(int).tolist())
    ds = make_dicom(stored, 12, WindowCenter=100, WindowWidth=10)  # a useless window: the LUT wins
    ds.VOILUTSequence = [lut]
    assert_within_one(read_gray(save(ds, tmp_path / "lut.dcm")), png)


def test_window_chosen_in_config_by_index_or_values(tmp_path):
    png = real_png(7)
    stored = png.astype(np.int64) * 15 + 100
    good = exact_window(100, 100 + 255 * 15)
    ds = make_dicom(stored, 12, WindowCenter=[500, good["WindowCenter"]], WindowWidth=[200, good["WindowWidth"]])
    path = save(ds, tmp_path / "two_windows.dcm")
    assert np.abs(read_gray(path).astype(int) - png).max() > 10  # the first window is not the PNG's
    assert_within_one(read_gray(path, dicom_window=1), png)
    assert_within_one(read_gray(path, dicom_window={"center": good["WindowCenter"], "width": good["WindowWidth"]}),
                      png)
    with pytest.raises(DecodeError, match=r"two_windows.dcm has 2 windows.*dicom_window asks for index 2"):
        read_gray(path, dicom_window=2)


def test_rle_and_jpeg2000_compressed_decode_like_the_uncompressed_file(tmp_path):
    png = real_png(8)
    stored = png.astype(np.int64) * 15 + 100
    window = exact_window(100, 100 + 255 * 15)
    files = {}
    for name, syntax in (("rle", RLELossless), ("j2k", JPEG2000Lossless)):
        ds = make_dicom(stored, 12, "MONOCHROME2", CR, **window)
        ds.compress(syntax)  # RLE: pydicom's own encoder; JPEG 2000: pylibjpeg-openjpeg's
        files[name] = save(ds, tmp_path / f"{name}.dcm")
        assert pydicom.dcmread(files[name]).file_meta.TransferSyntaxUID == syntax
    for path in files.values():
        assert_within_one(read_gray(path), png)
    mono1 = make_dicom(65535 - png.astype(np.int64) * 257, 16, "MONOCHROME1")
    mono1.compress(JPEG2000Lossless)
    assert_within_one(read_gray(save(mono1, tmp_path / "j2k_mono1.dcm")), png)


def test_jpeg_baseline_decodes_like_the_same_jpeg_read_as_a_file(tmp_path):
    """pydicom has no JPEG baseline encoder: OpenCV encodes, the DICOM encapsulates that stream."""
    png = real_png(9)
    ok, jpeg = cv2.imencode(".jpg", png, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    (tmp_path / "same.jpg").write_bytes(jpeg.tobytes())
    ds = make_dicom(png, 8)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([jpeg.tobytes()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    path = save(ds, tmp_path / "baseline.dcm")
    assert_within_one(read_gray(path), read_gray(tmp_path / "same.jpg"))


def test_a_file_with_the_preamble_but_no_extension_is_dicom(tmp_path):
    png = real_png()
    path = save(make_dicom(png, 8), tmp_path / "IM0001")
    assert is_dicom(path) and not is_dicom(SHARED_REAL / "seg" / "images" / "MCUCXR_0001_0.png")
    assert np.array_equal(read_gray(path), png)


# --- pydicom's bundled sample files (in the wheel; nothing is downloaded) --------------------------

MR_TWINS = ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
            "MR_small_bigendian.dcm", "MR_small_implicit.dcm"]


def linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 (LINEAR), onto 0..65535, written out here independently of pydicom."""
    y = ((x - (center - 0.5)) / (width - 1) + 0.5)
    return np.rint(np.clip(y, 0, 1) * 65535)


def test_sample_mr_in_six_transfer_syntaxes_decodes_to_one_image():
    """RLE, JPEG 2000 and JPEG-LS lossless, big endian and implicit VR: the same pixels after the pipeline,
    and those follow the standard's window formula. (MR, so only the pipeline: decode_dicom refuses it.)"""
    reference = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    expected = linear_window(reference.pixel_array.astype(float), float(reference.WindowCenter),
                             float(reference.WindowWidth))
    assert np.array_equal(pixels_from_dataset(reference), expected)
    for name in MR_TWINS:
        ds = pydicom.dcmread(get_testdata_file(name))
        assert np.array_equal(pixels_from_dataset(ds), expected), name


@pytest.mark.parametrize("name", ["JPGExtended.dcm", "JPEGLSNearLossless_16.dcm", "image_dfl.dcm"])
def test_sample_jpeg_extended_jpegls_and_deflate_decode_through_the_pipeline(name):
    ds = pydicom.dcmread(get_testdata_file(name))
    gray = pixels_from_dataset(ds)
    bits = max(8, int(ds.BitsStored))
    assert gray.shape == (ds.Rows, ds.Columns) and gray.dtype == (np.uint8 if bits == 8 else np.uint16)
    assert np.array_equal(gray, ds.pixel_array)  # no rescale, no window: stored values as they are


# --- clear per-file errors -------------------------------------------------------------------------

@pytest.mark.parametrize("name, message", [
    ("MR_small.dcm", r"not a usable radiograph: .*MR_small.dcm: its SOP class is MR Image Storage.*Modality is MR"),
    ("rtplan.dcm", r"rtplan.dcm: it has no pixel data \(a RT Plan Storage object\)"),
    ("SC_rgb_rle.dcm", r"SC_rgb_rle.dcm: .*not grayscale \(PhotometricInterpretation RGB, SamplesPerPixel 3\)"),
    ("examples_ybr_color.dcm", r"examples_ybr_color.dcm: .*multi-frame \(NumberOfFrames 30\)"),
])
def test_samples_that_are_not_one_grayscale_radiograph_are_refused(name, message):
    with pytest.raises(DecodeError, match=message):
        decode_dicom(get_testdata_file(name))


def test_corrupt_no_pixel_data_and_unsupported_syntax_name_the_file(tmp_path):
    png = real_png()
    good = save(make_dicom(png.astype(np.int64) * 16, 12), tmp_path / "good.dcm")
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size - png.size])  # half the pixel data gone
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\x00" * 128 + b"DICM" + bytes(range(256)) * 4)
    no_pixels = make_dicom(png, 8)
    del no_pixels.PixelData
    no_pixels = save(no_pixels, tmp_path / "no_pixels.dcm")
    mpeg = make_dicom(png, 8)
    mpeg.file_meta.TransferSyntaxUID = MPEG2MPML
    mpeg.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    mpeg["PixelData"].VR = "OB"
    mpeg = save(mpeg, tmp_path / "mpeg.dcm")
    cases = {truncated: r"pixel data of .*truncated.dcm do not decode",
             garbage: r"(not a readable DICOM file: .*garbage.dcm|garbage.dcm: it has no pixel data)",
             no_pixels: r"not a usable radiograph: .*no_pixels.dcm: it has no pixel data",
             mpeg: r"unsupported transfer syntax in .*mpeg.dcm: MPEG2 Main Profile / Main Level .* has no decoder"}
    for path, message in cases.items():
        with pytest.raises(DecodeError, match=message):
            read_gray(path)
    assert read_gray(good).shape == png.shape


def test_header_fields_pixel_spacing_prefers_imager_pixel_spacing():
    ds = make_dicom(np.zeros((16, 16)), 8, Manufacturer="ACME", ViewPosition="PA", BurnedInAnnotation="NO",
                    PixelSpacing=[0.2, 0.2], ImagerPixelSpacing=[0.143, 0.143])
    row = header_attributes(ds)
    assert set(row) == set(INDEX_COLUMNS) and set(INDEX_COLUMNS) <= set(TEXT_COLUMNS)
    assert row["pixel_spacing_mm"] == "0.143\\0.143" and row["pixel_spacing_tag"] == "ImagerPixelSpacing"
    del ds.ImagerPixelSpacing
    assert header_attributes(ds)["pixel_spacing_tag"] == "PixelSpacing"
    assert row["Manufacturer"] == "ACME" and row["InstitutionName"] == ""
    assert render_template("{InstitutionName}/{Manufacturer}", row) == ("unknown/ACME", ["InstitutionName"])
    assert render_template("Manufacturer", row) == ("ACME", [])


def test_pydicom_sample_files_are_bundled_not_downloaded():
    """get_testdata_file finds these in the installed wheel; a missing one would mean a download."""
    for name in ["MR_small.dcm", *MR_TWINS, "JPGExtended.dcm", "rtplan.dcm", "SC_rgb_rle.dcm"]:
        path = get_testdata_file(name, download=False)
        assert path is not None and Path(path).is_relative_to(Path(pydicom.__file__).parent), name
