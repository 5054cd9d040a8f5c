"""Snakemake script: lung masks (predicted or ground truth) for every classification image, with QC."""
from hideseek.segmentation.masks import ground_truth_masks, segment_store
from hideseek.rulelog import rule_logging
from hideseek.data.store import ImageStore

with rule_logging(snakemake.log[0]):
    cfg = snakemake.params.cfg
    store = ImageStore(snakemake.input.pixels, snakemake.input.index)
    if cfg["masks"] == "ground_truth":
        masks = ground_truth_masks(store.index, snakemake.input.truth)
    else:
        from hideseek.segmentation.inference import LungSegmenter
        from hideseek.devices import set_threads
        from hideseek.devices import resolve_device

        set_threads(snakemake.threads)
        segmenter = LungSegmenter.from_file(snakemake.input.model, device=resolve_device(snakemake.config["segmentation"]["device"]),
                                            batch_size=cfg["inference"]["batch_size"],
                                            keep_components=cfg["inference"]["keep_components"],
                                            fill_holes=cfg["inference"]["fill_holes"])
        masks = segmenter.segment(store[i] for i in range(len(store)))
    # On the phantom, predicted masks are also scored against the true ones, by class and source.
    truth_dir = snakemake.input.get("truth") if cfg["masks"] == "predicted" else None
    out = snakemake.output
    segment_store(store, masks, cfg, out.pixels, out.index, out.qc, out.summary, out.summary_md, truth_dir=truth_dir)
