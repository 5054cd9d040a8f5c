"""Snakemake script: Table 2 (lung segmentation on every configured test set, beside the paper's)."""
import pandas as pd

from hideseek.rulelog import rule_logging
from hideseek.segmentation.table2 import evaluate_sets, write_table2
from hideseek.segmentation.inference import LungSegmenter
from hideseek.devices import set_threads
from hideseek.segmentation.network import load_model
from hideseek.devices import resolve_device

with rule_logging(snakemake.log[0]):
    cfg = snakemake.params.cfg
    set_threads(snakemake.threads)
    device = resolve_device(snakemake.config["segmentation"]["device"])
    model, size, info = load_model(snakemake.input.model, device)
    segmenter = LungSegmenter(model, size, device=device, batch_size=cfg["inference"]["batch_size"],
                              keep_components=cfg["inference"]["keep_components"],
                              fill_holes=cfg["inference"]["fill_holes"])
    per_image = evaluate_sets(segmenter, pd.read_csv(snakemake.input.sets))
    write_table2(per_image, snakemake.output.csv, snakemake.output.md, snakemake.output.per_image,
                 model_info=info, dataset=snakemake.params.dataset)
