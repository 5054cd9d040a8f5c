"""DICOM radiographs: the pixels in the documented order, and the header fields the store records.

Pixel pipeline (PS3.4 Annex N, the grayscale pipeline; pydicom does each step):

1. **Modality LUT** — the Modality LUT Sequence, or Rescale Slope / Intercept
   (:func:`pydicom.pixels.apply_modality_lut`).
2. **VOI** — the VOI LUT Sequence item, else Window Center / Width with its VOI LUT Function
   (LINEAR, LINEAR_EXACT, SIGMOID); the first of several, or the one
   ``classification_data.dicom_window`` chooses: an index, or ``{center, width}`` of its own
   (:func:`pydicom.pixels.apply_voi_lut`). Its output is display-referred (black to white), so it
   is mapped linearly onto the full 16-bit range, 0..65535, whatever the file's Bits Stored: two
   sites' windowed images come out on one scale. A file with no VOI keeps modality-referred values:
   the modality output range of its stored range maps onto 0..2**B - 1, B = max(8, Bits Stored)
   (the identity for plain unsigned data), as a 16-bit PNG holds a scanner's raw values.
3. **MONOCHROME1** — inverted, so that bone is white in every image.

The result, uint8 (B = 8, no VOI) or uint16, then takes the one 8-bit rule of the whole data set
that 16-bit PNGs take (:func:`hideseek.data.decode.dataset_bits`, ``store.bits_stored``): never a
per-image stretch. Multi-frame, colour and non-radiograph objects (no pixel data, a modality or
SOP class that is not a radiograph) are :class:`~hideseek.data.decode.DecodeError`\\ s naming the
file, as are files that do not parse or whose transfer syntax has no decoder here.

Codecs: uncompressed (little/big endian, implicit/explicit VR), deflate, RLE (pydicom), JPEG
baseline / extended / lossless and JPEG-LS (pylibjpeg-libjpeg), JPEG 2000 and HTJ2K
(pylibjpeg-openjpeg). Video transfer syntaxes (MPEG, HEVC) and private ones are refused.

pydicom is imported inside the functions: :func:`is_dicom` runs on every image decoded, and a
PNG-only run should not pay for the import.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np

from ..errors import InputError, Problem, format_problems
from .decode import DecodeError

# Per image, in the store index (empty for images that are not DICOM). The header's own keywords,
# so a source template names them as they are: "{InstitutionName}/{Manufacturer}".
RECORDED_ATTRIBUTES = ("PatientID", "Manufacturer", "ManufacturerModelName", "InstitutionName", "ViewPosition",
                       "BurnedInAnnotation")
# "row\\column" in mm, and the attribute it came from (ImagerPixelSpacing first, then PixelSpacing).
SPACING_COLUMNS = ("pixel_spacing_mm", "pixel_spacing_tag")
INDEX_COLUMNS = (*RECORDED_ATTRIBUTES, *SPACING_COLUMNS)

RADIOGRAPH_MODALITIES = ("CR", "DX", "RG")
# CR Image Storage; Digital X-Ray for presentation and for processing; Secondary Capture (how many
# public chest sets, RSNA's among them, store their CR images).
RADIOGRAPH_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "CR Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
}
DISPLAY_TOP = 2**16 - 1  # the VOI output's range: 0..65535
PIXEL_ELEMENTS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
CONVERT_HINT = ("decompress it first (dcmtk: dcmdjpeg / dcmdrle; gdcm: gdcmconv --raw), or convert it to PNG")


def has_preamble(path: str | Path) -> bool:
    """True when the file has the 128-byte preamble followed by ``DICM``."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def is_dicom(path: str | Path) -> bool:
    """A ``.dcm`` file (any case) or any file with the DICOM preamble."""
    return Path(path).suffix.lower() == ".dcm" or has_preamble(path)


def read_dataset(path: str | Path, stop_before_pixels: bool = False):
    """The file's dataset; DecodeError naming the file when it does not parse.

    A ``.dcm`` without the preamble (a bare dataset, as some exporters write) is read with
    ``force``: what it lacks is then caught by :func:`check_radiograph`.
    """
    import pydicom

    try:
        return pydicom.dcmread(path, force=not has_preamble(path), stop_before_pixels=stop_before_pixels)
    except Exception as error:  # pydicom raises many kinds (InvalidDicomError, EOFError, struct.error, ...)
        raise DecodeError(f"not a readable DICOM file: {path} ({type(error).__name__}: {error})") from None


def _text(value) -> str:
    """A header value as one line of text: multi-valued as ``a\\b``, a person name as written."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(_text(v) for v in value)
    return str(value).strip()


def attribute_text(ds, keyword: str) -> str:
    """An attribute's value as text, '' when absent or empty."""
    return _text(ds.get(keyword)) if keyword in ds else ""


def header_attributes(ds) -> dict[str, str]:
    """The store index's DICOM columns for one dataset (:data:`INDEX_COLUMNS`)."""
    row = {keyword: attribute_text(ds, keyword) for keyword in RECORDED_ATTRIBUTES}
    tag = next((k for k in ("ImagerPixelSpacing", "PixelSpacing") if attribute_text(ds, k)), "")
    row["pixel_spacing_mm"] = attribute_text(ds, tag) if tag else ""
    row["pixel_spacing_tag"] = tag
    return row


def template_fields(template: str) -> list[str]:
    """The attribute keywords a ``{Keyword}`` template names; a bare keyword is a template of one."""
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    return fields or [template]


def render_template(template: str, values: dict[str, str], missing: str = "unknown") -> tuple[str, list[str]]:
    """`template` filled from `values` (a bare keyword is the value itself); returns (text, the
    keywords that were empty, each written as `missing`)."""
    fields = template_fields(template)
    empty = [name for name in fields if not values.get(name)]
    filled = {name: values.get(name) or missing for name in fields}
    text = filled[template] if fields == [template] and "{" not in template else template.format(**filled)
    return text.strip(), empty


def check_radiograph(ds, path: str | Path) -> None:
    """DecodeError naming the file, with every reason, unless `ds` is one grayscale radiograph."""
    reasons = []
    sop = str(ds.get("SOPClassUID", ""))
    if not any(name in ds for name in PIXEL_ELEMENTS):
        what = _sop_name(sop)
        reasons.append(f"it has no pixel data{f' (a {what} object)' if what else ''}")
    if sop and sop not in RADIOGRAPH_SOP_CLASSES:
        reasons.append(f"its SOP class is {_sop_name(sop) or sop}, not a radiograph "
                       f"({', '.join(RADIOGRAPH_SOP_CLASSES.values())})")
    modality = attribute_text(ds, "Modality")
    if modality and modality not in RADIOGRAPH_MODALITIES:
        reasons.append(f"its Modality is {modality}, not a radiograph ({', '.join(RADIOGRAPH_MODALITIES)})")
    frames = ds.get("NumberOfFrames")
    if frames is not None and _int_or_none(frames) != 1:
        reasons.append(f"it is multi-frame (NumberOfFrames {frames}); export the one radiograph as its own file")
    photometric = attribute_text(ds, "PhotometricInterpretation")
    samples = ds.get("SamplesPerPixel", 1)
    if any(name in ds for name in PIXEL_ELEMENTS) and (
            photometric not in ("MONOCHROME1", "MONOCHROME2") or samples != 1):
        reasons.append(f"it is not grayscale (PhotometricInterpretation {photometric or 'missing'}, "
                       f"SamplesPerPixel {samples}); radiographs are MONOCHROME1 or MONOCHROME2")
    allocated = ds.get("BitsAllocated")
    if allocated is not None and allocated > 16:
        reasons.append(f"BitsAllocated is {allocated}; radiographs of at most 16 bits are supported")
    if reasons:
        raise DecodeError(f"not a usable radiograph: {path}: " + "; ".join(reasons))


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _sop_name(sop: str) -> str:
    if not sop:
        return ""
    from pydicom.uid import UID

    name = UID(sop).name
    return "" if name == sop else name


def check_decoder(ds, path: str | Path) -> None:
    """DecodeError naming the file and its transfer syntax when pydicom has no working decoder."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    meta = getattr(ds, "file_meta", None)
    syntax = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else None
    if not syntax or (syntax.is_transfer_syntax and not syntax.is_compressed):
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        decoder = None
    if decoder is None or not decoder.is_available:
        raise DecodeError(
            f"unsupported transfer syntax in {path}: {syntax.name} ({syntax}) has no decoder here "
            "(supported: uncompressed, deflate, RLE, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, HTJ2K); "
            + CONVERT_HINT)


def _modality_range(ds) -> tuple[float, float]:
    """The modality LUT's output range for the file's stored range (PS3.3 C.11.1)."""
    from pydicom.pixels import apply_modality_lut

    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    stored = (np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1]) if int(ds.get("PixelRepresentation", 0)) == 1
              else np.array([0, 2**bits - 1]))
    ends = np.asarray(apply_modality_lut(stored.astype(np.float64), ds), dtype=np.float64)
    return float(ends.min()), float(ends.max())


def _window_count(ds) -> int:
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return 0
    return min(ds["WindowCenter"].VM, ds["WindowWidth"].VM)


def _voi(values: np.ndarray, ds, window, path) -> tuple[np.ndarray, tuple[float, float]] | None:
    """The VOI step: (output, its range), or None when the file has no VOI and none is chosen.

    `window`: None or an index (the VOI LUT item or window of that index; 0 = the first), or a
    ``{center, width}`` dict applied instead of anything in the file.
    """
    from pydicom.pixels import apply_voi_lut, apply_windowing

    if isinstance(window, dict):
        ds.WindowCenter, ds.WindowWidth = float(window["center"]), float(window["width"])
        for keyword in ("VOILUTSequence", "VOILUTFunction"):
            if keyword in ds:
                delattr(ds, keyword)
        index = 0
    else:
        index = int(window or 0)
    luts = len(ds.VOILUTSequence) if ds.get("VOILUTSequence") else 0
    windows = _window_count(ds)
    available = luts or windows
    if not available:
        return None
    if index >= available:
        kind = "VOI LUT items" if luts else "windows"
        raise DecodeError(f"{path} has {available} {kind}, but classification_data.dicom_window asks for "
                          f"index {index}")
    try:
        output = apply_voi_lut(values, ds, index=index, prefer_lut=True)
        if luts:
            bits = int(ds.VOILUTSequence[index].LUTDescriptor[2])
            return output, (0.0, float(2**bits - 1))
        with np.errstate(over="ignore"):
            ends = apply_windowing(np.array([-1e300, 1e300]), ds, index)
    except (ValueError, TypeError, AttributeError, IndexError) as error:
        raise DecodeError(f"{path}: the VOI LUT / window cannot be applied ({error})") from None
    return output, (float(ends[0]), float(ends[1]))


def pixels_from_dataset(ds, window=None, path: str | Path = "<dataset>") -> np.ndarray:
    """The documented pipeline on a parsed dataset (no radiograph check): uint8 or uint16 gray.

    Every step is per pixel value, so it runs once on every value the stored type can hold and
    the image is looked up in that table: the same numbers, ~20 times faster than per pixel.
    """
    check_decoder(ds, path)
    try:
        stored = ds.pixel_array
    except Exception as error:  # decoders raise what their library raises
        raise DecodeError(f"pixel data of {path} do not decode ({type(error).__name__}: {error})") from None
    if stored.ndim != 2:
        raise DecodeError(f"{path}: decoded pixel data have shape {stored.shape}, not one grayscale image")
    if stored.dtype.kind not in "ui" or stored.itemsize > 2:
        return _pipeline(stored, ds, window, path)
    first = int(np.iinfo(stored.dtype).min)
    table = _pipeline(np.arange(first, int(np.iinfo(stored.dtype).max) + 1), ds, window, path)
    return table[stored] if first == 0 else table[stored.astype(np.int32) - first]


def _pipeline(values: np.ndarray, ds, window, path) -> np.ndarray:
    """Modality LUT, VOI, the map onto 0..65535 (or the stored range), MONOCHROME1 inversion."""
    from pydicom.pixels import apply_modality_lut

    try:
        values = apply_modality_lut(values, ds)
        voi = _voi(values, ds, window, path)
        low, high = voi[1] if voi else _modality_range(ds)
    except DecodeError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        raise DecodeError(f"{path}: the modality LUT / rescale cannot be applied ({error})") from None
    if voi:
        values = voi[0]
    top = DISPLAY_TOP if voi else 2 ** max(8, int(ds.BitsStored)) - 1
    span = high - low if high > low else 1.0
    scaled = np.clip(np.rint((np.asarray(values, dtype=np.float64) - low) * (top / span)), 0, top)
    if attribute_text(ds, "PhotometricInterpretation") == "MONOCHROME1":
        scaled = top - scaled
    return scaled.astype(np.uint8 if top == 255 else np.uint16)


def decode_dicom(path: str | Path, window=None) -> np.ndarray:
    """A DICOM radiograph as 2-D gray (uint8 or uint16, see the module's pipeline); DecodeError
    naming the file for anything that is not one decodable grayscale radiograph."""
    ds = read_dataset(path)
    check_radiograph(ds, path)
    gray = pixels_from_dataset(ds, window, path)
    if min(gray.shape) < 8:
        raise DecodeError(f"image too small ({gray.shape[1]}x{gray.shape[0]} px): {path}")
    return gray



def read_header(path: str | Path, keywords=()) -> dict[str, str]:
    """The recorded attributes of one DICOM file (:data:`INDEX_COLUMNS`) and the other `keywords`
    (a template's), as text; DecodeError naming the file when it does not parse."""
    ds = read_dataset(path, stop_before_pixels=True)
    values = {keyword: attribute_text(ds, keyword) for keyword in keywords}
    values.update(header_attributes(ds))
    values["has_voi"] = bool(ds.get("VOILUTSequence")) or _window_count(ds) > 0
    return values


def check_keywords(data_cfg: dict) -> None:
    """InputError naming the key when patient_from / source_from name something that is not a DICOM keyword."""
    from pydicom.datadict import keyword_dict

    for key in ("patient_from", "source_from"):
        template = data_cfg.get(key)
        if not template:
            continue
        try:
            fields = template_fields(template)
        except ValueError as error:
            raise InputError(f"classification_data.{key}: '{template}' is not a valid template ({error}); write a "
                             "DICOM keyword (PatientID) or a template of them ('{InstitutionName}/{Manufacturer}')"
                             ) from None
        unknown = [name for name in fields if name not in keyword_dict]
        if unknown:
            raise InputError(f"classification_data.{key}: {', '.join(repr(n) for n in unknown)} "
                             f"{'is not a DICOM attribute keyword' if len(unknown) == 1 else 'are not DICOM attribute keywords'}"
                             " (keywords are case-sensitive: PatientID, Manufacturer, ManufacturerModelName, "
                             "InstitutionName, StationName, ViewPosition, ...)")


def apply_headers(frame, image_dir: str | Path, data_cfg: dict, progress: bool = True):
    """The store index's DICOM columns for each row (:data:`INDEX_COLUMNS`, '' for images that are
    not DICOM), and the patient and source from the headers where ``patient_from`` /
    ``source_from`` ask for them (``source_origin`` ``header``).

    Returns (the frame, with columns ``is_dicom`` and ``has_voi``, for :func:`dicom_note`, which the
    store index leaves out; one Problem per DICOM whose header does not
    parse, a row dropped under ``on_missing``). Images that do not exist are left to the decoder,
    which reports them. A patient the headers cannot give (an empty attribute, or an image that
    is not DICOM and has no patient of its own) raises an InputError listing every row.
    """
    from tqdm import tqdm

    check_keywords(data_cfg)
    patient_from, source_from = data_cfg.get("patient_from"), data_cfg.get("source_from")
    keywords = {name for template in (patient_from, source_from) if template for name in template_fields(template)}
    image_dir = Path(image_dir)
    frame = frame.reset_index(drop=True).copy()
    columns = {name: [""] * len(frame) for name in INDEX_COLUMNS}
    flags, voi, keep = [False] * len(frame), [False] * len(frame), [True] * len(frame)
    unreadable, no_patient = [], []
    for position, row in enumerate(tqdm(frame.itertuples(index=False), total=len(frame), desc="DICOM headers",
                                        unit="img", disable=not progress, mininterval=2.0)):
        file = image_dir / row.filename
        if not (file.is_file() and is_dicom(file)):
            if patient_from and file.is_file() and not row.patient_id:
                no_patient.append(Problem(row.split_file, int(row.line), f"'{row.filename}' is not a DICOM file, so "
                                          "patient_from cannot give its patient: fill its patient_id"))
            continue
        try:
            values = read_header(file, keywords)
        except DecodeError as error:
            unreadable.append(Problem(row.split_file, int(row.line), str(error)))
            keep[position] = False
            continue
        flags[position], voi[position] = True, values["has_voi"]
        for name in INDEX_COLUMNS:
            columns[name][position] = values[name]
        if patient_from:
            patient, empty = render_template(patient_from, values)
            if empty:
                no_patient.append(Problem(row.split_file, int(row.line), f"{file}: {', '.join(empty)} "
                                          f"{'is' if len(empty) == 1 else 'are'} empty (classification_data.patient_from: "
                                          f"{patient_from})"))
            frame.at[position, "patient_id"] = patient
        if source_from:
            source, empty = render_template(source_from, values)
            if len(empty) < len(template_fields(source_from)):  # nothing in the header: the other attribution stays
                frame.at[position, "source"], frame.at[position, "source_origin"] = source, "header"
    if no_patient:
        raise InputError(format_problems(no_patient, "images without a patient from their DICOM header",
                                         "Fill the patient in the headers or in the split file / labels CSV, or "
                                         "name another attribute in classification_data.patient_from."))
    for name, values in columns.items():
        frame[name] = values
    frame["is_dicom"], frame["has_voi"] = flags, voi
    return frame[keep].reset_index(drop=True), unreadable


def dicom_note(index, data_cfg: dict) -> str:
    """One line for the ingest report: how many images are DICOM and how their pixels, patients
    and sources were read; '' when none is."""
    if "is_dicom" not in index or not index["is_dicom"].any():
        return ""
    dicom = index[index["is_dicom"]]
    window = data_cfg.get("dicom_window") or 0
    voi = (f"the window center {window['center']:g} / width {window['width']:g} of classification_data.dicom_window"
           if isinstance(window, dict) else
           f"the file's VOI LUT or window of index {window} (classification_data.dicom_window)")
    views = dicom["ViewPosition"].replace("", "none").value_counts()
    text = (f"DICOM: {len(dicom)} of {len(index)} images. Pixels: modality LUT / rescale, then {voi} onto 0..65535 "
            "(files without one keep their modality values), MONOCHROME1 inverted, then the bit-depth rule above. "
            f"Patients from {data_cfg.get('patient_from') or 'the patient column'}; sources from "
            f"{data_cfg.get('source_from') or 'the source column / source_rules'}. ViewPosition: "
            + ", ".join(f"{view} {n}" for view, n in views.items()) + ".")
    burned = (dicom["BurnedInAnnotation"] == "YES").sum()
    text += f" {burned} declare BurnedInAnnotation YES." if burned else ""
    bare = int((~dicom["has_voi"]).sum()) if not isinstance(window, dict) else 0
    if bare and bare < len(dicom):
        text += (f" **{bare} of the {len(dicom)} DICOM images have no VOI LUT or window**: they keep modality values "
                 "while the others are windowed onto 0..65535, so the one 8-bit rule gives them another brightness; "
                 "set classification_data.dicom_window: {center, width} to window every image alike.")
    return text
