"""Training samplers: every epoch is a list of index batches, drawn from one torch.Generator.

``balanced``: class-balanced sampling with replacement (the seed's torchvision recipe);
``covidnet``: COVID-Net's batch re-balancing; ``shuffle``: every image once per epoch.
"""

from __future__ import annotations

from ..errors import InputError
from ..vocabulary import CLASSES

COVID = CLASSES.index("COVID-19")

def _batches(order, batch_size: int) -> list:
    """Split an index order into batches; a trailing batch of one image is dropped (BatchNorm
    cannot train on a single image with a 1 × 1 feature map)."""
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


class BalancedSampler:
    """Class-balanced sampling with replacement (the seed's torchvision recipe; like
    ``WeightedRandomSampler`` with weights 1 / class count): ``len(labels)`` draws per epoch."""

    def __init__(self, labels, batch_size: int, generator):
        import torch

        counts = torch.bincount(labels, minlength=len(CLASSES)).double()
        self.weights = torch.where(counts[labels] > 0, 1.0 / counts[labels], torch.zeros(()))
        self.n = len(labels)
        self.batch_size = batch_size
        self.generator = generator

    def epoch(self):
        import torch

        order = torch.multinomial(self.weights, self.n, replacement=True, generator=self.generator)
        return _batches(order, self.batch_size)


class ShuffleSampler:
    """Every image once per epoch, in a fresh random order."""

    def __init__(self, labels, batch_size: int, generator):
        self.n = len(labels)
        self.batch_size = batch_size
        self.generator = generator

    def epoch(self):
        import torch

        return _batches(torch.randperm(self.n, generator=self.generator), self.batch_size)


class CovidRebalanceSampler:
    """COVID-Net's batch re-balancing (``BalanceCovidDataset`` of its training script).

    An epoch is one shuffled pass over the non-COVID images in batches of `batch_size`; in
    every batch, ``max(int(covid_percent × len(batch)), 1)`` random positions are replaced by
    COVID-19 images drawn without replacement (2 of 8 with the paper's 0.3 and batch 8).
    """

    def __init__(self, labels, batch_size: int, covid_percent: float, generator):
        import torch

        self.other = torch.nonzero(labels != COVID).flatten()
        self.covid = torch.nonzero(labels == COVID).flatten()
        if len(self.covid) == 0 or len(self.other) == 0:
            raise InputError("COVID-Net batch re-balancing needs COVID-19 and non-COVID training images")
        self.batch_size = batch_size
        self.covid_percent = covid_percent
        self.generator = generator

    def covid_count(self, batch_len: int) -> int:
        return min(batch_len, max(int(batch_len * self.covid_percent), 1))

    def epoch(self):
        import torch

        g = self.generator
        batches = []
        for batch in _batches(self.other[torch.randperm(len(self.other), generator=g)], self.batch_size):
            batch = batch.clone()
            k = min(self.covid_count(len(batch)), len(self.covid))
            positions = torch.randperm(len(batch), generator=g)[:k]
            batch[positions] = self.covid[torch.randperm(len(self.covid), generator=g)[:k]]
            batches.append(batch)
        return batches


def make_sampler(recipe: dict, labels, generator):
    kind = recipe["sampler"]
    if kind == "balanced":
        return BalancedSampler(labels, recipe["batch_size"], generator)
    if kind == "covidnet":
        return CovidRebalanceSampler(labels, recipe["batch_size"], recipe["covid_percent"], generator)
    if kind == "shuffle":
        return ShuffleSampler(labels, recipe["batch_size"], generator)
    raise InputError(f"unknown sampler {kind!r} (balanced, covidnet or shuffle)")
