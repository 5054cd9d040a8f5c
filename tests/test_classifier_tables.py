"""Tables 3-7 arithmetic from a hand-made predictions file."""

import numpy as np
import pandas as pd
import pytest

from hideseek.vocabulary import CLASSES
from hideseek.classification.tables import (cell, confusion, METRIC_LABELS, METRICS, metrics_from_confusion, PAPER,
                                           table_rows, write_classifier_table)
from hideseek.vocabulary import TABLE_NUMBERS


def hand_made(rep, cm, seed=0, arch="resnet50", test_rep=None):
    """Predictions realising confusion matrix `cm` (rows true, columns predicted)."""
    rows = []
    i = 0
    for t, true in enumerate(CLASSES):
        for p, pred in enumerate(CLASSES):
            for _ in range(cm[t][p]):
                rows.append(dict(arch=arch, train_rep=rep, seed=seed, test_rep=test_rep or rep,
                                 image_id=f"im{i:03d}", patient_id=f"p{i}", source="s", true=true, predicted=pred,
                                 p_normal=0.2, p_pneumonia=0.3, p_covid=0.5))
                i += 1
    return pd.DataFrame(rows)


CM_DATA = [[8, 1, 1], [2, 7, 1], [0, 0, 10]]  # 10 per class
CM_REMOVED = [[6, 2, 2], [2, 6, 2], [1, 1, 8]]


def test_metrics_from_a_known_confusion_matrix():
    m = metrics_from_confusion(np.array(CM_DATA))
    assert m["accuracy"] == pytest.approx(25 / 30)
    assert m["sens_normal"] == pytest.approx(0.8)
    assert m["sens_pneumonia"] == pytest.approx(0.7)
    assert m["sens_covid_19"] == pytest.approx(1.0)
    assert m["ppv_normal"] == pytest.approx(8 / 10)
    assert m["ppv_pneumonia"] == pytest.approx(7 / 8)
    assert m["ppv_covid_19"] == pytest.approx(10 / 12)
    # Balanced test set: accuracy is the mean of the sensitivities (true of every paper table).
    assert m["accuracy"] == pytest.approx(np.mean([m[k] for k in ("sens_normal", "sens_pneumonia", "sens_covid_19")]))
    never_predicted = metrics_from_confusion(np.array([[5, 0, 0], [5, 0, 0], [0, 0, 5]]))
    assert np.isnan(never_predicted["ppv_pneumonia"]) and never_predicted["sens_pneumonia"] == 0


def test_confusion_orders_rows_and_columns_like_the_table():
    frame = hand_made("data", CM_DATA)
    assert confusion(frame["true"], frame["predicted"]).tolist() == CM_DATA


def test_table_rows_means_over_seeds_and_flags_other_test_reps_out(tmp_path):
    frames = [
        hand_made("data", CM_DATA, seed=0), hand_made("data", CM_DATA, seed=1),
        hand_made("lungs_removed", CM_REMOVED, seed=0), hand_made("lungs_removed", [[10, 0, 0], [0, 10, 0], [0, 0, 10]], seed=1),
        # hide at test time: data model on lungs_removed test images; not a Table 3-7 row
        hand_made("data", [[0, 0, 10], [0, 0, 10], [0, 0, 10]], seed=0, test_rep="lungs_removed"),
    ]
    table = table_rows(pd.concat(frames), n_boot=200)
    assert list(table["representation"]) == ["data", "lungs_removed"]
    data, removed = table.iloc[0], table.iloc[1]
    assert data["accuracy"] == pytest.approx(25 / 30) and data["n_seeds"] == 2 and data["n_test"] == 30
    assert removed["accuracy"] == pytest.approx((20 / 30 + 1.0) / 2)
    assert removed["sens_covid_19"] == pytest.approx((0.8 + 1.0) / 2)
    for metric in METRICS:
        assert data[f"{metric}_ci_low"] <= data[metric] + 1e-9 <= data[f"{metric}_ci_high"] + 2e-9
        assert data[f"{metric}_sd_over_seeds"] == pytest.approx(0)  # both seeds gave CM_DATA
    assert removed["accuracy_sd_over_seeds"] == pytest.approx(np.std([20 / 30, 1.0], ddof=1))
    assert np.isnan(data["mcnemar_p_vs_data"]) and 0 < removed["mcnemar_p_vs_data"] <= 1
    assert np.isnan(data["accuracy_diff_vs_data"])
    assert removed["accuracy_diff_vs_data"] == pytest.approx(removed["accuracy"] - data["accuracy"])
    assert removed["diff_ci_low"] <= removed["accuracy_diff_vs_data"] <= removed["diff_ci_high"]


def test_the_bootstrap_resamples_patients_within_class():
    """One patient per class: every resample redraws the same three patients, so every CI
    collapses to the point value. An image-level (or unstratified) bootstrap would not."""
    frame = hand_made("data", CM_DATA)
    frame["patient_id"] = frame["true"]
    row = table_rows(frame, n_boot=200).iloc[0]
    for metric in METRICS:
        assert row[f"{metric}_ci_low"] == pytest.approx(row[metric])
        assert row[f"{metric}_ci_high"] == pytest.approx(row[metric])
    assert row["n_patients"] == 3
    per_image = table_rows(hand_made("data", CM_DATA), n_boot=200).iloc[0]
    assert per_image["accuracy_ci_high"] - per_image["accuracy_ci_low"] > 0.1


def test_table_and_comparison_csv_agree():
    from hideseek.audit.comparisons import representation_comparison

    frames = pd.concat([hand_made("data", CM_DATA), hand_made("lungs_removed", CM_REMOVED)])
    table = table_rows(frames, n_boot=300, boot_seed=4)
    comparison = representation_comparison(frames, ["data", "lungs_removed"], n_boot=300, seed=4)
    assert table["accuracy_ci_low"].tolist() == pytest.approx(comparison["ci_low"].tolist())
    assert table["accuracy_ci_high"].tolist() == pytest.approx(comparison["ci_high"].tolist())
    assert table["mcnemar_p_vs_data_holm"].iloc[1] == pytest.approx(comparison["mcnemar_p_holm"].iloc[1])


def test_rows_on_different_test_images_are_refused():
    other = hand_made("lungs_removed", CM_REMOVED)
    other["image_id"] = "x" + other["image_id"]
    with pytest.raises(ValueError, match="lungs_removed: evaluated on other test images than data"):
        table_rows(pd.concat([hand_made("data", CM_DATA), other]), n_boot=20)


def test_markdown_bolds_the_best_per_column_and_sets_the_paper_beside(tmp_path):
    path = tmp_path / "preds.csv"
    pd.concat([hand_made("data", CM_DATA), hand_made("lungs_removed", CM_REMOVED)]).to_csv(path, index=False)
    csv, md = tmp_path / "table7_resnet50.csv", tmp_path / "table7_resnet50.md"
    table = write_classifier_table("resnet50", [path], csv, md, "built-in phantom, seed 0")
    written = pd.read_csv(csv)
    assert list(written["representation"]) == ["data", "lungs_removed"]
    assert table.loc[0, "accuracy"] == pytest.approx(0.833, abs=1e-3)
    # CSV columns are snake_case; the paper's labels appear only in the Markdown
    assert all(column == column.lower() and " " not in column and "-" not in column for column in written.columns)
    text = md.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| representation"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["representation", *METRIC_LABELS.values(),
                                                                 "p vs data (Holm)"]
    assert "| Sens COVID-19" in text and "sens_covid_19" not in text
    assert text.startswith("# Table 7 — ResNet-50")
    ours = [line for line in text.splitlines() if line.startswith("| data ") or line.startswith("| lungs_removed ")]
    assert ours[0].split("|")[2].strip().startswith("**0.83 [")  # best accuracy is data's, with its CI
    assert ours[1].split("|")[2].strip().startswith("0.67 [")
    assert "bootstrap CI (1000 resamples of patients" in text and "± " not in ours[0]
    assert "selected on the test set" in text
    assert "0.933" in text and "paper †" in text  # the paper's ResNet-50 data row
    assert TABLE_NUMBERS == {"covidnet_cxr3a": 3, "covidnet_cxr4a": 4, "alexnet": 5, "vgg11": 6, "resnet50": 7}


def test_markdown_cells_with_several_seeds_show_mean_sd_and_ci(tmp_path):
    path = tmp_path / "preds.csv"
    pd.concat([hand_made("data", CM_DATA, seed=0), hand_made("data", CM_REMOVED, seed=1)]).to_csv(path, index=False)
    write_classifier_table("resnet50", [path], tmp_path / "t.csv", tmp_path / "t.md", "x", n_boot=100)
    row = next(line for line in (tmp_path / "t.md").read_text().splitlines() if line.startswith("| data "))
    accuracy = row.split("|")[2].strip().strip("*")
    mean, sd = (25 / 30 + 20 / 30) / 2, np.std([25 / 30, 20 / 30], ddof=1)
    assert accuracy.startswith(f"{mean:.2f} ± {sd:.2f} [")


def test_cell_format():
    assert cell(0.9133, 0.871, 0.944) == "0.91 [0.87, 0.94]"
    assert cell(0.9133, 0.871, 0.944, sd=0.0213) == "0.91 ± 0.02 [0.87, 0.94]"
    assert cell(float("nan"), 0.1, 0.2) == "–"


def test_paper_values_are_consistent():
    for arch, rows in PAPER.items():
        assert len(rows) == 5
        for rep, values in rows.items():
            acc, sens = values[0], values[1:4]
            assert acc == pytest.approx(np.mean(sens), abs=0.002), (arch, rep)
