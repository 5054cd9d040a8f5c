"""hideseek.checkpoints: the one checkpoint format, its refusals, RNG states and the background writer."""

import logging
import random

import numpy as np
import pytest
import torch

from hideseek import checkpoints


def payload():
    return dict(fingerprint="run-a", epoch=3, model={"w": torch.arange(6.0).reshape(2, 3)}, history=[dict(loss=0.5)])


def test_save_then_load_with_the_right_fingerprint(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    checkpoints.save(path, payload())
    loaded = checkpoints.load(path, "run-a")
    assert loaded["format"] == checkpoints.FORMAT and loaded["epoch"] == 3 and loaded["history"] == [dict(loss=0.5)]
    assert torch.equal(loaded["model"]["w"], payload()["model"]["w"])
    assert list(path.parent.iterdir()) == [path]  # no temporary file left beside it


def test_missing_or_foreign_checkpoint_is_none(tmp_path):
    path = tmp_path / "last.pt"
    assert checkpoints.load(path, "run-a") is None
    checkpoints.save(path, payload())
    assert checkpoints.load(path, "run-b") is None  # stale: recipe, data or seed changed
    torch.save(dict(payload(), format="someone-else"), path)
    assert checkpoints.load(path, "run-a") is None


def test_truncated_checkpoint_is_none_with_a_warning(tmp_path, caplog):
    path = tmp_path / "last.pt"
    checkpoints.save(path, payload())
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # a write cut short by a kill
    with caplog.at_level(logging.WARNING, logger="hideseek.checkpoints"):
        assert checkpoints.load(path, "run-a") is None
    assert "unreadable checkpoint" in caplog.text


def test_a_file_that_is_not_a_torch_file_is_none(tmp_path):
    path = tmp_path / "last.pt"
    path.write_text("not a checkpoint\n")
    assert checkpoints.load(path, "run-a") is None


def _draw(generators):
    return (torch.rand(3), np.random.random(3), [random.random() for _ in range(3)],
            {name: torch.rand(3, generator=gen) for name, gen in generators.items()})


def test_rng_state_restores_every_stream(tmp_path):
    generators = dict(sampler=torch.Generator().manual_seed(1), augment=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    _draw(generators)
    state = checkpoints.rng_state(generators)
    # through a checkpoint file, as a resumed run gets it
    checkpoints.save(tmp_path / "last.pt", dict(fingerprint="run-a", rng=state))
    first = _draw(generators)
    checkpoints.set_rng_state(checkpoints.load(tmp_path / "last.pt", "run-a")["rng"], generators)
    again = _draw(generators)
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    assert first[2] == again[2]
    assert first[3].keys() == again[3].keys() == {"sampler", "augment"}
    for name in first[3]:
        assert torch.equal(first[3][name], again[3][name]), name


def test_snapshot_is_a_detached_copy():
    weights = torch.ones(3, requires_grad=True)
    copy = checkpoints.snapshot(dict(w=weights, steps=[torch.zeros(1)], lr=0.1))
    with torch.no_grad():
        weights.add_(1)
    assert torch.equal(copy["w"], torch.ones(3)) and not copy["w"].requires_grad and copy["lr"] == 0.1


def test_writer_writes_in_the_background_and_wait_reraises_its_error(tmp_path):
    writer = checkpoints.CheckpointWriter()
    writer.save(tmp_path / "ok" / "last.pt", payload())
    writer.wait()
    assert checkpoints.load(tmp_path / "ok" / "last.pt", "run-a")["epoch"] == 3
    blocker = tmp_path / "file"
    blocker.write_text("a file where the checkpoint directory should be\n")
    writer.save(blocker / "last.pt", payload())
    with pytest.raises(OSError):
        writer.wait()
    writer.wait()  # the error is raised once, then cleared


def test_a_failed_write_names_the_file_and_the_free_space_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    import torch

    from hideseek import checkpoints

    path = tmp_path / "ck" / "last.pt"
    checkpoints.save(path, {"epoch": 1})
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # what torch.save says when the disk fills mid-write
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(RuntimeError, match=r"could not write .*last\.pt: basic_ios::clear.*GiB free on its file system"):
        checkpoints.save(path, {"epoch": 2})

    def bug(obj, f, *args, **kwargs):
        raise RuntimeError("something else")

    monkeypatch.setattr(torch, "save", bug)  # not a write failure: passes through unchanged
    with pytest.raises(RuntimeError, match=r"^something else$"):
        checkpoints.save(path, {"epoch": 3})
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(path, weights_only=True)["epoch"] == 1  # the last whole checkpoint stays
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left behind
