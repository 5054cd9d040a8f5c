"""Turn COVIDx-format split files into the checked, split, preprocessed image store.

The one entry point is :func:`ingest_classification_data`; it fails before leaving any
output when the input is bad, listing every bad line, or drops bad lines and reports them,
as the config's ``on_missing`` says. Copies of one image (by content, :mod:`.duplicates`)
are carved together and must not straddle partitions (``on_duplicate``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MAX_LISTED_PROBLEMS, InputError, Problem, format_problems
from ..io import write_csv_atomic, write_text_atomic
from ..vocabulary import CLASSES, PARTITIONS
from .decode import bit_depth_note
from .dicom import INDEX_COLUMNS as DICOM_COLUMNS, apply_headers, dicom_note
from .duplicates import copy_groups, find_copies, linked_groups
from .labels_csv import read_labels_csv
from .splitfiles import attribute_sources, parse_split_file, split_duplicates
from .store import write_derived_store, write_store

log = logging.getLogger(__name__)

INDEX_ORDER = [
    "image_id", "patient_id", "filename", "label", "source", "source_origin", "partition",
    "split_file", "line", "offset", "height", "width", "orig_height", "orig_width",
    *DICOM_COLUMNS,  # the DICOM header fields (hideseek.data.dicom); empty for other images
]


def ingest_classification_data(
    data_cfg: dict,
    store_long_side: int,
    image_dir: str | Path,
    train_split: str | Path,
    test_split: str | Path | None,
    out_index: str | Path,
    out_pixels: str | Path,
    out_dropped: str | Path,
    out_report: str | Path,
    out_duplicates: str | Path,
    threads: int = 1,
    bits_stored: int | None = None,
    test_only: bool = False,
    labels_csv: str | Path | None = None,
) -> pd.DataFrame:
    """Parse, validate, attribute sources, decode into the store, find copies, split; return the index.

    `data_cfg` is the validated ``classification_data`` config section. Outputs: the store
    (`out_pixels` + `out_index`), CSVs of dropped lines and of copies of one image, and a
    Markdown report. On an InputError none of them is left behind. `test_only` (an external
    test set, :mod:`hideseek.external`): every line of `test_split` stays a test image, nothing is carved.
    `labels_csv` (:mod:`.labels_csv`) replaces the split files: its rows are one pool the test split is
    carved from (with `test_only`, all test). DICOM header fields go into the index (:mod:`.dicom`).
    """
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise InputError(f"image folder not found: {image_dir} (classification_data.image_dir)")

    unmatched = []  # labels CSV rows whose SOPInstanceUID no file has: missing images
    if labels_csv is not None:
        frame, duplicate_notes, unmatched = read_labels_csv(labels_csv, image_dir, data_cfg.get("patient_from"),
                                                            partition="test" if test_only else "pool")
    else:
        frame, duplicate_notes = read_split_files(train_split, test_split, image_dir)
    frame = attribute_sources(frame, data_cfg["source_rules"])
    frame, unreadable = apply_headers(frame, image_dir, data_cfg)  # patient_from / source_from, header columns
    frame["image_id"] = frame["filename"]

    log.info("decoding %d images from %s", len(frame), image_dir)
    # one 16-bit rule for the whole data set: store.bits_stored, else the depth of its largest value
    kept, image_problems = write_store(frame, image_dir, store_long_side, out_pixels, threads=threads,
                                       bits_stored=bits_stored, dicom_window=data_cfg.get("dicom_window"))
    image_problems = unmatched + unreadable + image_problems
    if image_problems and data_cfg["on_missing"] == "fail":
        Path(out_pixels).unlink(missing_ok=True)
        raise InputError(format_problems(
            image_problems, f"images listed in the split files are missing or unreadable under {image_dir}",
            "Fix or remove these lines, or set classification_data.on_missing: drop to drop them and get a report."))
    if image_problems:
        log.warning("dropped %d lines whose image is missing or unreadable (on_missing: drop)", len(image_problems))
    try:
        pixels = np.load(out_pixels, mmap_mode="r")
        pairs = find_copies(pixels, kept, data_cfg["near_duplicate_threshold"])
        log.info("copies of one image: %d exact and %d near pairs", (pairs["kind"] == "exact").sum(),
                 (pairs["kind"] == "near").sum())
        kept["carve_group"] = linked_groups(kept["patient_id"], pairs)
        if not test_only:
            kept = _assign_partitions(kept, data_cfg, has_test_split=test_split is not None)
        kept, pairs, copy_problems = resolve_copies(kept, pairs, data_cfg["on_duplicate"])
        assert_no_leakage(kept)
        assert_every_class_present(kept, ("test",) if test_only else PARTITIONS)
        dropped = pd.DataFrame(
            [dict(split_file=p.file, line=p.line, reason=p.reason) for p in image_problems + copy_problems],
            columns=["split_file", "line", "reason"])
        write_csv_atomic(dropped, out_dropped)
        write_csv_atomic(pairs, out_duplicates)
        pixel_notes = filter(None, (bit_depth_note(kept, bits_stored), dicom_note(kept, data_cfg)))
        write_text_atomic(out_report, ingest_report(kept, dropped, duplicate_notes, pairs, data_cfg, test_split,
                                                    "\n".join(pixel_notes), labels_csv=labels_csv))
        kept = kept[INDEX_ORDER]
        if copy_problems:  # the dropped copies' pixels go too: the store holds its index's images only
            _compact_store(pixels, kept, out_pixels, out_index)
        else:
            write_csv_atomic(kept, out_index)
    except BaseException:
        Path(out_pixels).unlink(missing_ok=True)
        raise
    return kept


def _compact_store(pixels: np.ndarray, index: pd.DataFrame, out_pixels, out_index) -> None:
    sizes = (index["height"] * index["width"]).to_numpy(np.int64)
    images = (np.asarray(pixels[o:o + n]).reshape(h, w) for o, n, h, w in
              zip(index["offset"], sizes, index["height"], index["width"]))
    compact = index.assign(offset=np.cumsum(sizes) - sizes)
    write_derived_store(compact, images, out_pixels, out_index)


def read_split_files(train_split, test_split, image_dir=None) -> tuple[pd.DataFrame, list[Problem]]:
    """Every usable line of the split files, exact repeats dropped, and the notes on those
    repeats; raise InputError listing every bad line. Without a test split all lines form
    one pool that the test split is carved from."""
    frames, problems = [], []
    for path, partition in ((train_split, "train"), (test_split, "test")):
        if path is None:
            continue
        frame, found = parse_split_file(path, "pool" if test_split is None else partition, image_dir)
        frames.append(frame)
        problems += found
    frame, conflicts, duplicate_notes = split_duplicates(pd.concat(frames, ignore_index=True))
    problems += conflicts
    if problems:
        raise InputError(format_problems(
            problems, "the split files have lines that cannot be used",
            "Fix these lines; on_missing: drop only covers missing or unreadable images."))
    if frame.empty:
        raise InputError(f"no image lines found in {train_split}" + (f" or {test_split}" if test_split else ""))
    return frame, duplicate_notes


def ingest_report(index: pd.DataFrame, dropped: pd.DataFrame, duplicate_notes: list[Problem], pairs: pd.DataFrame,
                  data_cfg: dict, test_split, bit_depth: str = "", labels_csv=None) -> str:
    """A short Markdown account of what ingestion did."""
    lines = ["# Ingestion report", ""]
    counts = index.groupby("partition").size().reindex(PARTITIONS, fill_value=0)
    lines.append("Images kept: " + ", ".join(f"{part} {n}" for part, n in counts.items()) + f" (total {len(index)}).")
    lines.append(f"Patients: {index['patient_id'].nunique()}; no patient is in two partitions, "
                 "and no image is copied into two partitions (see Duplicates).")
    origin = index["source_origin"].value_counts()
    lines.append(
        "Source attribution: "
        + ", ".join(f"{origin.get(k, 0)} from {label}" for k, label in
                    (("column", "the 4th column"), ("rule", "source_rules"), ("header", "DICOM headers (source_from)"),
                     ("unknown", "nothing (unknown)")))
        + "."
    )
    if bit_depth:
        lines.append(bit_depth)
    lines += ["", "## Partitions", "", *_partition_lines(index, data_cfg, test_split, labels_csv)]
    lines += ["", f"## Dropped lines ({len(dropped)})", ""]
    lines += [f"- {row.split_file}:{row.line}: {row.reason}" for row in dropped.itertuples()] or ["None."]
    lines += ["", f"## Lines listed twice, kept once ({len(duplicate_notes)})", ""]
    lines += [f"- {note}" for note in duplicate_notes] or ["None."]
    lines += ["", "## Duplicates", "", *_duplicate_lines(pairs, data_cfg["near_duplicate_threshold"]), ""]
    return "\n".join(lines)


def _partition_lines(index: pd.DataFrame, data_cfg: dict, test_split, labels_csv=None) -> list[str]:
    """What was asked for, and the images per class and partition with the shares achieved."""
    if (index["partition"] == "test").all():  # an external test set (test_only): nothing carved
        counts = index["label"].value_counts().reindex(list(CLASSES), fill_value=0).rename("test")
        return [f"Test only: every image of {test_split or labels_csv} is a test image (an external test set).", "",
                counts.rename_axis("label").to_frame().to_markdown()]
    seed = data_cfg["split_seed"]
    test = (f"Test: the given test split {test_split}." if test_split else
            f"Test: carved, requested test_fraction {data_cfg['test_fraction']:.0%} of each class's images, seed {seed}.")
    val = (f"Validation: carved, requested val_fraction {data_cfg['val_fraction']:.0%} of each class's training "
           f"images, seed {seed + 1}.")
    table = index.groupby(["label", "partition"]).size().unstack(fill_value=0)
    table = table.reindex(index=list(CLASSES), columns=list(PARTITIONS), fill_value=0)
    table.loc["all"] = table.sum()
    requested = f"requested {data_cfg['test_fraction']:.0%}" if not test_split else "given"
    table[f"val / (train+val), requested {data_cfg['val_fraction']:.0%}"] = (
        table["val"] / (table["train"] + table["val"])).map("{:.1%}".format)
    table[f"test / all, {requested}"] = (table["test"] / table[list(PARTITIONS)].sum(axis=1)).map("{:.1%}".format)
    return [test, val, "Whole patients move, with every copy of their images (see Duplicates).", "",
            table.to_markdown()]


def _duplicate_lines(pairs: pd.DataFrame, threshold) -> list[str]:
    """Counts of copy pairs by kind, within or across partitions, and dropped."""
    how = ("exact copies: the same stored pixels; near copies: detail thumbnails correlating at least "
           f"{threshold} (classification_data.near_duplicate_threshold)" if threshold is not None else
           "exact copies only: the same stored pixels (near_duplicate_threshold: null)")
    across = pairs["partition_a"] != pairs["partition_b"]
    dropped = pairs["action"] == "dropped_from_test"
    table = pd.DataFrame({
        "within a partition": (~across).groupby(pairs["kind"]).sum(),
        "across partitions": across.groupby(pairs["kind"]).sum(),
        "dropped from test": dropped.groupby(pairs["kind"]).sum(),
    }).reindex(["exact", "near"], fill_value=0)
    return [f"Pairs of lines holding one image ({how}); each pair is listed in duplicates.csv.", "",
            table.rename_axis("pairs").to_markdown()]


def _assign_partitions(frame: pd.DataFrame, data_cfg: dict, has_test_split: bool) -> pd.DataFrame:
    """Carve test (if there is no test split) and validation, whole carving groups at a time."""
    frame = frame.copy()
    seed = data_cfg["split_seed"]
    if not has_test_split:
        test_rows = carve_grouped(frame, data_cfg["test_fraction"], seed, "test")
        frame["partition"] = np.where(test_rows, "test", "train")
    train = frame["partition"] == "train"
    # Patients in both given splits would be moved to val only partly: the audit below catches them.
    val_rows = carve_grouped(frame[train].reset_index(drop=True), data_cfg["val_fraction"], seed + 1, "validation")
    frame.loc[frame.index[train][val_rows], "partition"] = "val"
    return frame


CARVE_KEYS = {"test": "test_fraction", "validation": "val_fraction"}


def carve_grouped(frame: pd.DataFrame, fraction: float, seed: int, what: str, groups: str = "carve_group") -> np.ndarray:
    """Boolean mask of rows to move out: per class, round(`fraction` × its images), whole groups.

    A group (column `groups`: a patient with the copies of its images) counts for the class of
    its first image. Per class its groups are shuffled with the seed and taken until the carved
    count reaches the target, to within one group; at least one group of each class goes to
    each side, so a class with fewer than 2 groups is an InputError.
    """
    per_group = frame.groupby(groups, sort=False).agg(label=("label", "first"), images=("label", "size"))
    counts = per_group.groupby("label")["images"].agg(["size", "sum"]).reindex(list(CLASSES), fill_value=0)
    if (counts["size"] < 2).any():
        raise InputError(_too_small_message(counts, fraction, what))
    carved = []
    for class_index, label in enumerate(CLASSES):
        sizes = per_group.loc[per_group["label"] == label, "images"]
        order = np.random.default_rng([seed, class_index]).permutation(len(sizes))
        carved += _take_groups(sizes.iloc[order], round(fraction * int(sizes.sum())))
    return frame[groups].isin(carved).to_numpy()


def _take_groups(sizes: pd.Series, target: int) -> list:
    """Groups (index of `sizes`, in its order) whose images add up to `target`, to within one
    group: each that still fits is taken, then one more if it lands closer. At least one
    group is taken and one left."""
    taken, count = [], 0
    for group, size in sizes.items():
        if count + size <= target and len(taken) < len(sizes) - 1:
            taken.append(group)
            count += size
    rest = sizes.drop(taken)
    if len(rest) > 1 or not taken:
        group = (count + rest - target).abs().idxmin()
        if not taken or abs(count + rest[group] - target) < target - count:
            taken.append(group)
    return taken


def _too_small_message(counts: pd.DataFrame, fraction: float, what: str) -> str:
    source, change = (("the training images", "Add training images of the classes marked (or lower "
                       "classification_data.test_fraction when test is carved).") if what == "validation" else
                      ("the pool (train_split without test_split)", "Add images of the classes marked."))
    listed = "\n".join(
        f"  {label}: {row['sum']} image(s) in {row['size']} group(s)" + ("  <- too few" if row["size"] < 2 else "")
        for label, row in counts.iterrows())
    return (f"cannot carve a {what} split of {fraction:.0%} (classification_data.{CARVE_KEYS[what]}) from {source}: "
            "every class needs at least 2 groups, one for each side (a group is a patient together with "
            f"any copies of its images):\n{listed}\n{change}")


def resolve_copies(frame: pd.DataFrame, pairs: pd.DataFrame, on_duplicate: str
                   ) -> tuple[pd.DataFrame, pd.DataFrame, list[Problem]]:
    """Check copies of one image against the partitions; return (kept rows, pairs described
    for duplicates.csv, one Problem per dropped row).

    A copy across train/val and test fails, or with ``drop_from_test`` its test-side members go.
    Copies within one partition are only reported. Carving never splits a copy between train
    and val, so such a split would be a bug and always fails.
    """
    a, b = _oriented(frame, pairs)
    parts = frame["partition"].to_numpy()
    across = np.flatnonzero(parts[a] != parts[b])
    if len(across) and (on_duplicate == "fail" or (parts[b[across]] != "test").any()):
        raise InputError(format_problems(
            [Problem(frame.at[b[k], "split_file"], int(frame.at[b[k], "line"]),
                     _copy_reason(frame, a[k], b[k], pairs.iloc[k])) for k in across],
            "copies of one image are in more than one partition, so a model would be tested on "
            "images it was trained or selected on",
            "Remove one line of each pair from the split files, or set classification_data.on_duplicate: "
            "drop_from_test to drop the test-side copies and report them. For near copies you judge "
            "distinct, raise classification_data.near_duplicate_threshold (null: exact copies only)."))
    group = copy_groups(len(frame), pairs)
    is_test = parts == "test"
    # The first train/val member of each copy group: what a dropped test row is a copy of.
    original = pd.Series(np.flatnonzero(~is_test)).groupby(group[~is_test]).first()
    drop = is_test & np.isin(group, original.index)
    problems = [Problem(frame.at[row, "split_file"], int(frame.at[row, "line"]),
                        f"copy of '{frame.at[original[group[row]], 'filename']}' at {_where(frame, original[group[row]])} "
                        f"({parts[original[group[row]]]}); dropped from test (classification_data.on_duplicate: "
                        "drop_from_test)")
                for row in np.flatnonzero(drop)]
    described = describe_pairs(frame, a, b, pairs)
    described["action"] = np.where(drop[a] | drop[b], "dropped_from_test", "reported")
    return frame[~drop].reset_index(drop=True), described, problems


def _oriented(frame: pd.DataFrame, pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The pairs' rows (a, b) with b in the later partition (train, val, test)."""
    rank = frame["partition"].map({p: i for i, p in enumerate(PARTITIONS)}).to_numpy()
    a, b = pairs["a"].to_numpy(np.int64), pairs["b"].to_numpy(np.int64)
    swap = rank[a] > rank[b]
    return np.where(swap, b, a), np.where(swap, a, b)


def _where(frame: pd.DataFrame, row: int) -> str:
    return f"{frame.at[row, 'split_file']}:{int(frame.at[row, 'line'])}"


def _copy_reason(frame: pd.DataFrame, a: int, b: int, pair) -> str:
    kind = "an exact copy" if pair["kind"] == "exact" else f"a near copy (correlation {pair['correlation']:.4f})"
    return (f"'{frame.at[b, 'filename']}' ({frame.at[b, 'partition']}) is {kind} of '{frame.at[a, 'filename']}' "
            f"at {_where(frame, a)} ({frame.at[a, 'partition']})")


def describe_pairs(frame: pd.DataFrame, a: np.ndarray, b: np.ndarray, pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs as duplicates.csv lists them (without the action)."""
    where = (frame["split_file"].astype(str) + ":" + frame["line"].astype(int).astype(str)).to_numpy()
    names, parts = frame["filename"].to_numpy(), frame["partition"].to_numpy()
    return pd.DataFrame(dict(line_a=where[a], line_b=where[b], file_a=names[a], file_b=names[b],
                             partition_a=parts[a], partition_b=parts[b], kind=pairs["kind"].to_numpy(),
                             correlation=pairs["correlation"].round(4).to_numpy()))


def leaking_patients(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Patients found in more than one partition, with the partitions they are in."""
    per_patient = frame.groupby("patient_id")["partition"].unique()
    return {patient: sorted(parts) for patient, parts in per_patient.items() if len(parts) > 1}


def assert_no_leakage(frame: pd.DataFrame) -> None:
    leaks = leaking_patients(frame)
    if leaks:
        listed = "\n".join(f"  patient {p}: {', '.join(parts)}" for p, parts in list(leaks.items())[:MAX_LISTED_PROBLEMS])
        raise InputError(
            f"{len(leaks)} patient(s) appear in more than one of train/val/test, which leaks "
            f"patients between training and evaluation:\n{listed}\n"
            "Fix the split files so that each patient is in one partition only."
        )


def assert_every_class_present(frame: pd.DataFrame, partitions=PARTITIONS) -> None:
    """Each partition needs every class, or sensitivities and PPVs are undefined."""
    missing = [
        f"  {part}: no '{label}' images"
        for part in partitions
        for label in CLASSES
        if not ((frame["partition"] == part) & (frame["label"] == label)).any()
    ]
    if missing:
        raise InputError("after splitting, some partitions lack a class:\n" + "\n".join(missing)
                         + "\nAdd data for those classes or change val_fraction/test_fraction.")
