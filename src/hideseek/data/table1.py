"""Table 1: what the data set holds, and how strong its source shortcut is before any training."""

from __future__ import annotations

import pandas as pd

from ..io import write_csv_atomic, write_text_atomic
from ..vocabulary import CLASS_KEYS, CLASSES, PARTITIONS


def class_counts(index: pd.DataFrame) -> pd.DataFrame:
    """Images per class for each partition × source, with 'all' rows per partition and overall."""
    rows = []
    for partition in (*PARTITIONS, "all"):
        part = index if partition == "all" else index[index["partition"] == partition]
        for source in ["all", *sorted(index["source"].unique())]:
            sub = part if source == "all" else part[part["source"] == source]
            counts = sub["label"].value_counts()
            rows.append(
                dict(partition=partition, source=source, **{CLASS_KEYS[c]: int(counts.get(c, 0)) for c in CLASSES},
                     total=len(sub), patients=sub["patient_id"].nunique())
            )
    return pd.DataFrame(rows)


def source_shortcut(index: pd.DataFrame) -> pd.DataFrame:
    """Accuracy on test of a 'classifier' that sees only the data source.

    It predicts, for each source, the most common label of that source in train + val (ties:
    table order of the classes; a source unseen in training gets the overall majority label).
    Chance is the test set's majority-class rate. Per-class sensitivity of the rule is given too.
    """
    fit = index[index["partition"].isin(["train", "val"])]
    test = index[index["partition"] == "test"]
    overall = fit["label"].value_counts().reindex(list(CLASSES), fill_value=0).idxmax()
    rule = {
        source: group["label"].value_counts().reindex(list(CLASSES), fill_value=0).idxmax()
        for source, group in fit.groupby("source")
    }
    predicted = test["source"].map(lambda s: rule.get(s, overall))
    correct = predicted.values == test["label"].values
    rows = [
        dict(metric="source-only accuracy", value=correct.mean() if len(test) else float("nan"), n=len(test)),
        dict(metric="chance (majority class of test)", value=test["label"].value_counts(normalize=True).max()
             if len(test) else float("nan"), n=len(test)),
    ]
    for label in CLASSES:
        of_class = (test["label"] == label).values
        rows.append(dict(metric=f"source-only sensitivity {label}",
                         value=correct[of_class].mean() if of_class.any() else float("nan"), n=int(of_class.sum())))
    rows.append(dict(metric="unknown-source share", value=(index["source"] == "unknown").mean(), n=len(index)))
    return pd.DataFrame(rows)


def view_position_lines(index: pd.DataFrame) -> list[str]:
    """Images per class by DICOM ViewPosition (PA, AP, LL, ...), per partition and overall: a view
    is a classic shortcut (the sick are imaged AP, lying down). No lines when no image has one."""
    if "ViewPosition" not in index or not index["ViewPosition"].fillna("").astype(str).str.strip().any():
        return []
    views = index.assign(view=index["ViewPosition"].fillna("").astype(str).str.strip().replace("", "none"))
    table = pd.crosstab([views["partition"], views["view"]], views["label"])
    table = table.reindex(columns=list(CLASSES), fill_value=0)
    overall = pd.crosstab(views["view"], views["label"]).reindex(columns=list(CLASSES), fill_value=0)
    table = pd.concat([table, pd.concat({"all": overall}, names=["partition"])])
    table["total"] = table.sum(axis=1)
    order = {part: i for i, part in enumerate((*PARTITIONS, "all"))}
    table = table.sort_index(level=0, key=lambda level: level.map(order) if level.name == "partition" else level)
    return ["Images per class by view position (DICOM ViewPosition; none: not DICOM or not recorded).", "",
            table.reset_index().to_markdown(index=False), ""]


def duplicates_line(pairs: pd.DataFrame | None) -> str:
    """What ingestion found of copies of one image (results/data/duplicates.csv), in one sentence."""
    if pairs is None:
        return ""
    across = pairs["partition_a"] != pairs["partition_b"]
    dropped = (pairs["action"] == "dropped_from_test").sum()
    return (f"Copies of one image found at ingestion (results/data/duplicates.csv): "
            f"{(pairs['kind'] == 'exact').sum()} exact and {(pairs['kind'] == 'near').sum()} near pairs; "
            f"{int(across.sum())} across partitions, {int(dropped)} of them dropped from test.")


def write_table1(index: pd.DataFrame, out_csv, out_md, out_shortcut_csv, dataset_name: str,
                 duplicates: pd.DataFrame | None = None) -> None:
    counts = class_counts(index)
    shortcut = source_shortcut(index)
    write_csv_atomic(counts, out_csv)
    write_csv_atomic(shortcut, out_shortcut_csv)
    per_partition = counts[counts["source"] == "all"].drop(columns="source")
    per_source = counts[(counts["partition"] == "all") & (counts["source"] != "all")].drop(columns="partition")
    per_source_test = counts[(counts["partition"] == "test") & (counts["source"] != "all")].drop(columns="partition")
    accuracy = shortcut.set_index("metric")["value"]
    labels = {key: label for label, key in CLASS_KEYS.items()}  # the .md shows the class labels
    per_partition, per_source, per_source_test = (
        frame.rename(columns=labels) for frame in (per_partition, per_source, per_source_test))
    text = [
        f"# Table 1 — data ({dataset_name})",
        "",
        "Images per class in each partition (validation is carved from train, grouped by patient).",
        "",
        per_partition.to_markdown(index=False),
        "",
        duplicates_line(duplicates),
        "",
        "Images per class by data source (all partitions).",
        "",
        per_source.to_markdown(index=False),
        "",
        "Test partition by data source.",
        "",
        per_source_test.to_markdown(index=False),
        "",
        *view_position_lines(index),
        "## How much does the source alone give away?",
        "",
        "A rule that predicts each source's most common training label, evaluated on test "
        f"(no image is looked at): accuracy **{accuracy['source-only accuracy']:.3f}** against a chance "
        f"(majority-class) rate of {accuracy['chance (majority class of test)']:.3f}. The further the first "
        "number is above the second, the more a classifier can score by recognising the hospital.",
        "",
        shortcut.to_markdown(index=False, floatfmt=".3f"),
        "",
    ]
    write_text_atomic(out_md, "\n".join(text))
