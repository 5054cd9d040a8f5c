"""Snakemake script: write the built-in phantom data set."""
import shutil
from pathlib import Path

from hideseek.data.phantom import generate_phantom
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    out_dir = Path(snakemake.params.out_dir)
    # Generate into a temporary folder and move into place, so a kill leaves nothing half-written.
    tmp_dir = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    generate_phantom(tmp_dir, snakemake.params.phantom)
    for name in ("covidx", "seg"):
        shutil.rmtree(out_dir / name, ignore_errors=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        (tmp_dir / name).rename(out_dir / name)
    shutil.rmtree(tmp_dir, ignore_errors=True)
    log.info("phantom written to %s", out_dir)
