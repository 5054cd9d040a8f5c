"""Learning curves: one panel per representation from the runs' history.csv files."""

import pandas as pd

from hideseek.classification.curves import read_histories, write_learning_curves


def history(path, learning: bool):
    epochs = [1, 2, 3]
    val = [0.4, 0.7, 0.9] if learning else [0.33, 0.34, 0.33]
    pd.DataFrame(dict(epoch=epochs, train_accuracy=[0.5, 0.8, 0.95] if learning else [0.33] * 3,
                      val_balanced_accuracy=val, selected=[v == max(val) for v in val])).to_csv(path, index=False)
    return str(path)


def test_learning_curves_figure_has_every_run(tmp_path):
    files = {("data", 0): history(tmp_path / "a.csv", True), ("data", 1): history(tmp_path / "b.csv", True),
             ("lungs_boxed_out", 0): history(tmp_path / "c.csv", False)}
    out = tmp_path / "curves.png"
    histories = write_learning_curves("resnet50", files, ["data", "lungs_boxed_out"], out)
    assert out.stat().st_size > 5_000
    assert sorted(histories.groupby(["representation", "seed"]).size().items()) == [
        (("data", 0), 3), (("data", 1), 3), (("lungs_boxed_out", 0), 3)]
    # an old history without train_accuracy still plots
    old = pd.read_csv(files[("data", 0)]).drop(columns="train_accuracy")
    old.to_csv(tmp_path / "old.csv", index=False)
    write_learning_curves("resnet50", {("data", 0): str(tmp_path / "old.csv")}, ["data"], tmp_path / "old.png")
    assert (tmp_path / "old.png").is_file()
    assert "train_accuracy" not in read_histories({("data", 0): str(tmp_path / "old.csv")})
