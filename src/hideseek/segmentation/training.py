"""Training the lung U-Net: grouped validation split, augmentation, checkpoints, resume.

:func:`train_unet` assembles the parts: the training/validation split, a fresh or resumed
:class:`_Run` (model, optimizer, scheduler, history, best epoch), then per epoch
:func:`train_one_epoch` and :func:`validate`, and a :func:`checkpoint_payload` saved with
:mod:`hideseek.checkpoints`.

* Model selection uses a validation split carved from the training set, grouped by the pairs'
  ``group`` (Tang et al.'s six images of one mask never straddle it); test sets are never
  looked at (DESIGN §5). Images that also appear in a test set (same file or same bytes) are
  removed from training first, so a test set may be carved from the training folder by name.
* Augmentation suits radiographs: small rotation, scale and shift, gamma, brightness, noise and
  blur; no horizontal flip (the heart is on one side).
* Every epoch writes a checkpoint outside the rule's declared outputs (model, optimizer,
  scheduler, epoch, config, best-so-far weights, RNG states), loadable with
  ``torch.load(weights_only=True)``. A rerun with the same config and data resumes after the
  last finished epoch; the random streams of epoch *e* derive from (seed, e), so a resumed run
  gives the same weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import checkpoints
from ..data.decode import read_gray, read_mask
from ..errors import InputError
from ..io import write_csv_atomic, write_text_atomic
from ..seeding import seed_everything
from .geometry import image_to_model, mask_to_model, zscore
from .network import build_unet, save_model

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_dice", "lr", "seconds", "best"]


# ----------------------------------------------------------------------------- data


def file_digest(path: str | Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def exclude_test_images(train: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop training pairs whose image is also a test image (same resolved path or same bytes).

    Returns (kept training pairs, dropped pairs). This is what lets a config name held-out test
    images with a regex over the training folder, and what stops a test image copied under
    another name from leaking into training.
    """
    if train.empty or test.empty:
        return train, train.iloc[0:0]
    test_paths = {str(Path(p).resolve()) for p in test["image"]}
    test_digests = {file_digest(p) for p in test["image"]}
    leaked = np.array([str(Path(p).resolve()) in test_paths or file_digest(p) in test_digests
                       for p in train["image"]], dtype=bool)
    return train[~leaked].reset_index(drop=True), train[leaked].reset_index(drop=True)


def grouped_split(pairs: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Carve about `val_fraction` of the images as validation, whole groups at a time."""
    groups = np.array(sorted(pairs["group"].astype(str).unique()))
    if len(groups) < 2:
        raise InputError(f"the segmentation training set has {len(groups)} group(s); at least 2 are needed to carve "
                         "a validation split (check segmentation_data.train.group)")
    rng = np.random.default_rng(seed)
    sizes = pairs["group"].astype(str).value_counts()
    target = val_fraction * len(pairs)
    val_groups, count = [], 0
    for group in rng.permutation(groups):
        if count >= target or len(val_groups) == len(groups) - 1:
            break
        val_groups.append(group)
        count += int(sizes[group])
    is_val = pairs["group"].astype(str).isin(val_groups).to_numpy()
    return pairs[~is_val].reset_index(drop=True), pairs[is_val].reset_index(drop=True)


def _train_val_split(pairs: pd.DataFrame, train_cfg: dict, seed: int, size: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``train`` rows of `pairs` minus any test image, split into training and validation."""
    train_all = pairs[pairs["set"] == "train"].reset_index(drop=True)
    train_all, dropped = exclude_test_images(train_all, pairs[pairs["set"] != "train"])
    if len(dropped):
        log.info("held out of training: %d images that are also in a test set", len(dropped))
    if train_all.empty:
        raise InputError("no segmentation training images left (every one is also in a test set?)")
    train, val = grouped_split(train_all, train_cfg["val_fraction"], seed)
    log.info("U-Net data: %d training images (%d groups), %d validation images (%d groups), size %d px",
             len(train), train["group"].nunique(), len(val), val["group"].nunique(), size)
    return train, val


def load_pairs(pairs: pd.DataFrame, size: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Read every pair, pad to square and resize: (N, size, size) uint8 images and 0/1 masks."""

    def one(row):
        image, mask = read_gray(row.image), read_mask(row.mask)
        if image.shape != mask.shape:
            raise InputError(f"{row.image}: image is {image.shape} but its mask {row.mask} is {mask.shape}")
        return image_to_model(image, size), mask_to_model(mask, size)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        loaded = list(pool.map(one, pairs.itertuples(index=False)))
    if not loaded:
        return np.zeros((0, size, size), np.uint8), np.zeros((0, size, size), np.uint8)
    images, masks = zip(*loaded)
    return np.stack(images), np.stack(masks)


def augmentation(size: int, strength: dict):
    """MONAI dictionary transforms (image in [0, 1], label 0/1) suited to frontal radiographs."""
    from monai import transforms as T
    from monai.data import set_track_meta

    set_track_meta(False)  # plain tensors out of the transforms

    rotate = math.radians(strength["rotate_deg"])
    shift = strength["translate"] * size
    return T.Compose([
        T.RandAffined(keys=["image", "label"], prob=0.9, rotate_range=(rotate,), scale_range=(strength["scale"],) * 2,
                      translate_range=(shift, shift), mode=("bilinear", "nearest"), padding_mode="zeros"),
        T.RandAdjustContrastd(keys="image", prob=0.5, gamma=(0.7, 1.5)),
        T.RandScaleIntensityd(keys="image", factors=strength["intensity"], prob=0.5),
        T.RandShiftIntensityd(keys="image", offsets=strength["intensity"], prob=0.5),
        T.RandGaussianSmoothd(keys="image", sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0), prob=0.2),
        T.RandGaussianNoised(keys="image", std=0.03, prob=0.3),
    ])


class _PairDataset:
    """torch-style dataset over preloaded uint8 arrays; augmentation per sample."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, transform=None):
        self.images, self.masks, self.transform = images, masks, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        import torch

        item = dict(image=torch.from_numpy(self.images[i][None].astype(np.float32) / 255.0),
                    label=torch.from_numpy(self.masks[i][None].astype(np.float32)))
        if self.transform is not None:
            item = self.transform(item)
        return torch.as_tensor(item["image"]).float(), torch.as_tensor(item["label"]).round().float()


def _loader(dataset, batch_size, shuffle, generator):
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=0,
                      drop_last=False)


@dataclass
class _Data:
    """The preloaded pairs and the random streams that draw from them."""

    train_set: _PairDataset
    val_loader: Any
    transform: Any  # the augmentation, None when off; reseeded every epoch
    generator: Any  # the training loader's shuffling; reseeded every epoch


def _load_data(train: pd.DataFrame, val: pd.DataFrame, size: int, train_cfg: dict, threads: int) -> _Data:
    """Every pair read once into memory, as the training dataset and the validation loader."""
    import torch

    t0 = time.perf_counter()
    images, masks = load_pairs(pd.concat([train, val], ignore_index=True), size, threads)
    log.info("loaded %d pairs in %.1f s", len(images), time.perf_counter() - t0)
    n_train = len(train)
    transform = augmentation(size, train_cfg["augment"]) if train_cfg["augment"]["enabled"] else None
    train_set = _PairDataset(images[:n_train], masks[:n_train], transform)
    val_set = _PairDataset(images[n_train:], masks[n_train:])
    generator = torch.Generator()
    return _Data(train_set, _loader(val_set, train_cfg["batch_size"], False, None), transform, generator)


# ----------------------------------------------------------------------------- checkpoints


def fingerprint(train: pd.DataFrame, val: pd.DataFrame, settings: dict) -> str:
    """What makes a checkpoint resumable: the training settings and the exact training files."""
    files = []
    for part, frame in (("train", train), ("val", val)):
        for row in frame.itertuples(index=False):
            # contents, not time stamps: a data set regenerated byte-identically still resumes
            files.append([part, Path(row.image).name, file_digest(row.image), Path(row.mask).name,
                          file_digest(row.mask)])
    text = json.dumps(dict(settings=settings, files=files), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def training_settings(cfg: dict) -> dict:
    """The parts of the `segmentation` config that define the trained model."""
    return dict(seed=cfg["seed"], image_size=cfg["image_size"], network=cfg["network"], train=cfg["train"])


@dataclass
class _Run:
    """What the training carries from epoch to epoch, and through a checkpoint."""

    model: Any
    optimizer: Any
    scheduler: Any  # None without a learning-rate schedule
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: dict(epoch=0, dice=-1.0, state=None))


def resume(run: _Run, checkpoint_path: Path, key: str) -> int:
    """Put `run` where the checkpoint at `checkpoint_path` left it, if that is one of this run
    (fingerprint `key`); returns the epoch to train next (1 without one)."""
    checkpoint = checkpoints.load(checkpoint_path, key)
    if checkpoint is None:
        return 1
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    if run.scheduler is not None and checkpoint.get("scheduler") is not None:
        run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.history = list(checkpoint["history"])
    run.best = dict(epoch=checkpoint["best_epoch"], dice=checkpoint["best_val_dice"], state=checkpoint["best_state"])
    checkpoints.set_rng_state(checkpoint["rng"])
    log.info("resuming from %s after epoch %d (best so far: epoch %d, val Dice %.4f)", checkpoint_path,
             int(checkpoint["epoch"]), run.best["epoch"], run.best["dice"])
    return int(checkpoint["epoch"]) + 1


def checkpoint_payload(run: _Run, epoch: int, key: str, settings: dict) -> dict:
    """Everything :func:`resume` needs (saved before the next epoch changes the model)."""
    return dict(
        fingerprint=key, epoch=epoch, config=settings,
        model={k: v.detach().cpu() for k, v in run.model.state_dict().items()},
        optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict() if run.scheduler is not None else None,
        best_state=run.best["state"], best_epoch=run.best["epoch"], best_val_dice=run.best["dice"],
        history=run.history, rng=checkpoints.rng_state())


# ----------------------------------------------------------------------------- training


def _new_run(cfg: dict, device) -> _Run:
    """A fresh model on `device`, its optimizer and learning-rate schedule."""
    import torch

    train_cfg = cfg["train"]
    model = build_unet(cfg["network"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_cfg["learning_rate"],
                                 weight_decay=train_cfg["weight_decay"])
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(train_cfg["epochs"]),
                                                            eta_min=train_cfg["learning_rate"] * 0.01)
                 if train_cfg["scheduler"] == "cosine" else None)
    return _Run(model, optimizer, scheduler)


def train_one_epoch(run: _Run, data: _Data, loss_fn, train_cfg: dict, seed: int, epoch: int, device,
                    progress: bool) -> tuple[float, float]:
    """One shuffled, augmented pass over the training pairs, then a scheduler step.

    Returns (mean training loss, learning rate used). Every random stream of the epoch is
    reseeded from (seed, epoch) first: a resumed run draws what an uninterrupted one would.
    """
    import torch
    from tqdm import tqdm

    epoch_seed = seed * 100_003 + epoch
    data.generator.manual_seed(epoch_seed)
    torch.manual_seed(epoch_seed)
    np.random.seed(epoch_seed % 2**32)
    if data.transform is not None:
        data.transform.set_random_state(seed=epoch_seed % 2**32)
    run.model.train()
    running, seen = 0.0, 0
    loader = _loader(data.train_set, train_cfg["batch_size"], True, data.generator)
    bar = tqdm(loader, desc=f"U-Net epoch {epoch}/{int(train_cfg['epochs'])}", unit="batch", disable=not progress,
               leave=False, mininterval=1.0)
    for image, label in bar:
        image, label = zscore(image).to(device), label.to(device)
        run.optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(run.model(image), label)
        loss.backward()
        run.optimizer.step()
        running += loss.item() * len(image)
        seen += len(image)
        bar.set_postfix(loss=f"{running / seen:.4f}")
    bar.close()
    lr = run.optimizer.param_groups[0]["lr"]
    if run.scheduler is not None:
        run.scheduler.step()
    return running / max(seen, 1), lr


def validate(model, loader, loss_fn, device) -> tuple[float, float]:
    """(mean loss, mean lung Dice) at model resolution, no augmentation."""
    import torch
    from monai.metrics import DiceMetric

    dice = DiceMetric(include_background=False, reduction="mean")
    losses, count = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for image, label in loader:
            image, label = zscore(image).to(device), label.to(device)
            logits = model(image)
            losses += float(loss_fn(logits, label)) * len(image)
            count += len(image)
            pred = torch.nn.functional.one_hot(logits.argmax(1), 2).permute(0, 3, 1, 2).float()
            truth = torch.nn.functional.one_hot(label[:, 0].long(), 2).permute(0, 3, 1, 2).float()
            dice(pred, truth)
    value = dice.aggregate().item() if count else float("nan")
    return losses / max(count, 1), float(value)


def _keep_best(run: _Run, epoch: int, val_dice: float) -> bool:
    """Keep the model if its validation Dice is the best so far; returns whether it is."""
    improved = run.best["state"] is None or val_dice > run.best["dice"]
    if improved:
        run.best = dict(epoch=epoch, dice=val_dice,
                        state={k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()})
    return improved


def train_unet(pairs: pd.DataFrame, cfg: dict, model_path: str | Path, history_path: str | Path,
               checkpoint_dir: str | Path, device, threads: int = 1, progress: bool = True,
               epoch_budget: int | None = None) -> pd.DataFrame:
    """Train the U-Net on the ``train`` rows of `pairs` (seg_sets.csv); write the selected model.

    `pairs` holds every set; only ``set == "train"`` rows are trained on, minus any image also in
    a test set. `epoch_budget` stops after that many epochs in this call (as a kill would); a
    later call resumes. Returns the per-epoch history.
    """
    from monai.losses import DiceCELoss

    settings = training_settings(cfg)
    train_cfg, size, seed = cfg["train"], int(cfg["image_size"]), int(cfg["seed"])
    seed_everything(seed)
    train, val = _train_val_split(pairs, train_cfg, seed, size)

    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = checkpoint_dir / "last.pt"
    key = fingerprint(train, val, settings)
    write_text_atomic(checkpoint_dir / "config.json", json.dumps(dict(settings=settings, fingerprint=key,
                                                                      n_train=len(train), n_val=len(val)), indent=2))
    write_csv_atomic(pd.concat([train.assign(split="train"), val.assign(split="val")]), checkpoint_dir / "split.csv")

    run = _new_run(cfg, device)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    epochs = int(train_cfg["epochs"])
    start = resume(run, checkpoint_path, key)
    data = _load_data(train, val, size, train_cfg, threads) if start <= epochs else None

    for done_now, epoch in enumerate(range(start, epochs + 1)):
        if epoch_budget is not None and done_now >= epoch_budget:
            log.info("stopping after %d epoch(s) as asked; rerun to resume", done_now)
            return pd.DataFrame(run.history, columns=HISTORY_COLUMNS)
        t0 = time.perf_counter()
        train_loss, lr = train_one_epoch(run, data, loss_fn, train_cfg, seed, epoch, device, progress)
        val_loss, val_dice = validate(run.model, data.val_loader, loss_fn, device)
        improved = _keep_best(run, epoch, val_dice)
        row = dict(epoch=epoch, train_loss=train_loss, val_loss=val_loss, val_dice=val_dice, lr=lr,
                   seconds=time.perf_counter() - t0, best=improved)
        run.history.append(row)
        log.info("epoch %d/%d: train loss %.4f, val loss %.4f, val lung Dice %.4f%s (%.1f s)", epoch, epochs,
                 train_loss, val_loss, val_dice, " *" if improved else "", row["seconds"])
        checkpoints.save(checkpoint_path, checkpoint_payload(run, epoch, key, settings))
        write_csv_atomic(pd.DataFrame(run.history, columns=HISTORY_COLUMNS), checkpoint_dir / "history.csv")
    return _finish(run, cfg, train, val, model_path, history_path)


def _finish(run: _Run, cfg: dict, train: pd.DataFrame, val: pd.DataFrame, model_path, history_path) -> pd.DataFrame:
    """Write the selected model and the history; returns the history."""
    frame = pd.DataFrame(run.history, columns=HISTORY_COLUMNS)
    meta = dict(best_epoch=int(run.best["epoch"]), best_val_dice=float(run.best["dice"]),
                epochs=int(cfg["train"]["epochs"]), n_train=len(train), n_val=len(val), seed=int(cfg["seed"]),
                train_seconds=float(frame["seconds"].sum()))
    save_model(model_path, run.best["state"], cfg["network"], int(cfg["image_size"]), meta)
    write_csv_atomic(frame, history_path)
    log.info("selected epoch %d (validation lung Dice %.4f); trained %.0f s in all", run.best["epoch"],
             run.best["dice"], meta["train_seconds"])
    return frame
