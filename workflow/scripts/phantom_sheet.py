"""Snakemake script: contact sheet of phantom radiographs (class x acquisition site)."""
from pathlib import Path

from hideseek.data.phantom import make_contact_sheet
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]):
    make_contact_sheet(Path(snakemake.input.train).parent, snakemake.output[0])
