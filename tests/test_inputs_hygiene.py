"""Between the raw files and the outputs: split files must be UTF-8, file names must resolve
inside the image folder, outputs follow the user's umask, the config's comments name real keys."""

import codecs
import os
import subprocess
import sys

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from conftest import REPO
from hideseek.data.splitfiles import parse_split_file
from hideseek.errors import InputError

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
LINES = "p1 a.png normal rsna\nNA b.png pneumonia NA\n"


# ----------------------------------------------------------------------------- encodings

def test_latin1_split_file_names_line_offset_and_what_to_do(tmp_path):
    split = tmp_path / "train.txt"
    split.write_bytes(LINES.encode() + "caf\u00e9 c.png COVID-19 x\n".encode("latin-1"))
    with pytest.raises(InputError) as error:
        parse_split_file(split, "train")
    assert str(error.value) == (
        f"{split}:3: the split file is not UTF-8: byte 0xe9 at byte offset 46 (column 4 of "
        "'caf\\xe9 c.png COVID-19 x') is not valid UTF-8 (saved as latin-1 or Windows-1252?). Re-save it as "
        f"UTF-8 (in an editor, or: iconv -f LATIN1 -t UTF-8 {split} > fixed.txt, then use fixed.txt)")


def test_utf16_split_file_is_called_utf16(tmp_path):
    split = tmp_path / "train.txt"
    split.write_bytes(codecs.BOM_UTF16_LE + LINES.encode("utf-16-le"))
    with pytest.raises(InputError) as error:
        parse_split_file(split, "train")
    assert str(error.value) == (
        f"{split}: the split file looks like UTF-16 (it starts with a UTF-16 byte-order mark), not UTF-8. "
        f"Re-save it as UTF-8 (in an editor, or: iconv -f UTF-16 -t UTF-8 {split} > fixed.txt, then use fixed.txt)")
    split.write_bytes(LINES.encode("utf-16-le"))  # no BOM: the NUL bytes give it away
    with pytest.raises(InputError, match=r"looks like UTF-16 \(line 1 has NUL bytes\), not UTF-8"):
        parse_split_file(split, "train")


def test_utf8_with_bom_and_crlf_is_accepted_and_na_stays_a_string(tmp_path):
    split = tmp_path / "train.txt"
    split.write_bytes(codecs.BOM_UTF8 + LINES.replace("\n", "\r\n").encode() + "caf\u00e9 c.png COVID-19\n".encode())
    frame, problems = parse_split_file(split, "train")
    assert not problems
    assert frame["patient_id"].tolist() == ["p1", "NA", "caf\u00e9"]
    assert frame["source"].tolist()[:2] == ["rsna", "NA"] and frame["line"].tolist() == [1, 2, 3]


# ----------------------------------------------------------------------------- the image folder

def split_with(tmp_path, *names):
    split = tmp_path / "train.txt"
    split.write_text("".join(f"p{k} {name} normal\n" for k, name in enumerate(names)))
    return split


def reasons(split, image_dir=None):
    frame, problems = parse_split_file(split, "train", image_dir=image_dir)
    return frame["filename"].tolist(), {p.line: p.reason for p in problems}


def test_symlink_out_of_the_image_folder_is_rejected(tmp_path):
    images, outside = tmp_path / "images", tmp_path / "elsewhere"
    (images / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "x.png").write_bytes(b"")
    (images / "link.png").symlink_to(outside / "x.png")
    (images / "linkdir").symlink_to(outside)
    (images / "sub" / "in.png").write_bytes(b"")
    (images / "inside.png").symlink_to(images / "sub" / "in.png")
    split = split_with(tmp_path, "link.png", "linkdir/x.png", "inside.png", "a.png")
    kept, problems = reasons(split, images)
    assert kept == ["inside.png", "a.png"]
    assert problems == {
        1: f"file name 'link.png' resolves to {outside / 'x.png'}, outside the image folder {images} (a symlink?)",
        2: f"file name 'linkdir/x.png' resolves to {outside / 'x.png'}, outside the image folder {images} (a symlink?)",
    }
    assert reasons(split) == (["link.png", "linkdir/x.png", "inside.png", "a.png"], {})  # textual: not seen


def test_absolute_path_inside_the_folder_is_accepted_outside_rejected(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    split = split_with(tmp_path, f"{images}/a.png", "/etc/passwd", "../secret.png", "sub/../b.png")
    kept, problems = reasons(split, images)
    assert kept == [f"{images}/a.png", "sub/../b.png"]
    assert problems == {2: f"file name '/etc/passwd' points outside the image folder {images}",
                        3: f"file name '../secret.png' points outside the image folder {images}"}
    # Without the folder (the old, textual check) an absolute name is always outside.
    assert reasons(split)[1][1] == f"file name '{images}/a.png' points outside the image folder"


def test_relative_image_folder(tmp_path, monkeypatch):
    (tmp_path / "images").mkdir()
    monkeypatch.chdir(tmp_path)
    kept, problems = reasons(split_with(tmp_path, "a.png", "../x.png"), "images")
    assert kept == ["a.png"] and problems == {2: f"file name '../x.png' points outside the image folder "
                                                 f"{tmp_path / 'images'}"}


# ----------------------------------------------------------------------------- umask

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_follow_the_umask(tmp_path, umask, mode):
    # A fresh interpreter: the writer reads the umask once, at import.
    code = ("import os, sys; os.umask(int(sys.argv[1], 8)); import pandas as pd; "
            "from hideseek.io import write_csv_atomic, write_text_atomic; out = sys.argv[2]; "
            "write_text_atomic(out + '/a.md', 'x'); write_csv_atomic(pd.DataFrame({'a': [1]}), out + '/b.csv')")
    subprocess.run([sys.executable, "-c", code, oct(umask), str(tmp_path)], check=True)
    for name in ("a.md", "b.csv"):
        assert oct(os.stat(tmp_path / name).st_mode & 0o777) == oct(mode)
    assert not list(tmp_path.glob(".*tmp*"))


# ----------------------------------------------------------------------------- config comments

def test_config_comment_names_keys_the_schema_knows():
    text = (REPO / "config" / "config.yaml").read_text()
    assert "labels_file" not in text
    assert "train_split alone, and test_fraction" in text
    single_labels_file = yaml.safe_load(text)
    single_labels_file["classification_data"].update(kind="covidx", image_dir="img", train_split="labels.txt",
                                                     test_fraction=0.2)
    validate(single_labels_file, SCHEMA)
    single_labels_file["classification_data"]["labels_file"] = "labels.txt"
    with pytest.raises(WorkflowError, match="'labels_file' was unexpected"):
        validate(single_labels_file, SCHEMA)
