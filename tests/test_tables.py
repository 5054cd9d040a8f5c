import pandas as pd
import pytest

from hideseek.data.table1 import class_counts, source_shortcut, write_table1


def make_index():
    rows = []
    # train: site a is mostly normal, site b mostly COVID-19; test mirrors it.
    for part, n in (("train", 10), ("val", 2), ("test", 5)):
        for i in range(n):
            rows.append(dict(patient_id=f"{part}a{i}", label="normal", source="a", partition=part))
            rows.append(dict(patient_id=f"{part}b{i}", label="COVID-19", source="b", partition=part))
            rows.append(dict(patient_id=f"{part}c{i}", label="pneumonia", source="b" if i % 2 else "a", partition=part))
    rows.append(dict(patient_id="x", label="pneumonia", source="unseen", partition="test"))
    return pd.DataFrame(rows)


def test_class_counts_per_partition_and_source():
    counts = class_counts(make_index()).set_index(["partition", "source"])
    assert counts.loc[("train", "all"), ["normal", "pneumonia", "covid_19", "total"]].tolist() == [10, 10, 10, 30]
    assert counts.loc[("test", "a"), "normal"] == 5
    assert counts.loc[("all", "all"), "total"] == 52
    assert counts.loc[("test", "unseen"), "pneumonia"] == 1


def test_source_only_accuracy_by_hand():
    shortcut = source_shortcut(make_index()).set_index("metric")["value"]
    # Fit on train+val: site a -> normal (12 vs 6 pneumonia), site b -> COVID-19 (12 vs 6);
    # an unseen source gets the overall majority label (a three-way tie -> normal, table order).
    # Test: 5 normal@a right, 5 COVID@b right, pneumonia (3@a, 2@b, 1 unseen) all wrong -> 10/16.
    assert shortcut["source-only accuracy"] == pytest.approx(10 / 16)
    assert shortcut["chance (majority class of test)"] == pytest.approx(6 / 16)
    assert shortcut["source-only sensitivity pneumonia"] == 0
    assert shortcut["source-only sensitivity COVID-19"] == 1


def test_write_table1_files(tmp_path):
    pairs = pd.DataFrame(dict(kind=["exact", "near", "near"], partition_a=["train", "train", "test"],
                              partition_b=["test", "train", "test"], action=["dropped_from_test", "reported", "reported"]))
    write_table1(make_index(), tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "s.csv", "unit test", duplicates=pairs)
    text = (tmp_path / "t.md").read_text()
    assert "1 exact and 2 near pairs; 1 across partitions, 1 of them dropped from test." in text
    assert "# Table 1 — data (unit test)" in text and "**0.625**" in text
    assert pd.read_csv(tmp_path / "t.csv").shape[0] == 4 * 4
