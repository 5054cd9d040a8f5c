"""Snakemake script: Figure 3 and the lung attention table of one architecture (Grad-CAM)."""
from hideseek.rulelog import rule_logging
from hideseek.audit.attention import explain_architecture, summarize_attention
from hideseek.audit.figure3 import figure3

with rule_logging(snakemake.log[0]) as log:
    import pandas as pd

    from hideseek.io import write_csv_atomic
    from hideseek.devices import resolve_device

    p = snakemake.params
    inp = snakemake.input
    arch = snakemake.wildcards.arch
    models = {rep: inp[f"model_{rep}"] for rep in p.reps}
    stores = {rep: (inp[f"pixels_{rep}"], inp[f"index_{rep}"]) for rep in p.reps}
    own = {}
    for rep in p.reps:
        frame = pd.read_csv(inp[f"pred_{rep}"])
        own[rep] = frame[frame["test_rep"] == rep]
    device = str(resolve_device(p.device))
    panels, per_image, grid, picks = explain_architecture(
        arch, models, stores, own, (inp.mask_pixels, inp.mask_index), p.n_images, p.sample_seed,
        device=device, threads=snakemake.threads, n_boot=p.n_boot, boot_seed=p.boot_seed)
    input_size = int(panels[0]["image"].shape[-1]) if panels else 0
    figure3(panels, p.reps, snakemake.output.figure, arch, grid, input_size, picks)
    summary = summarize_attention(per_image, p.reps, p.n_boot, p.boot_seed, p.level)
    summary.insert(0, "arch", arch)
    summary["cam_grid"] = f"{grid[0]}x{grid[1]}" if grid else ""
    summary["input_size"] = input_size
    write_csv_atomic(summary, snakemake.output.attention)
    write_csv_atomic(per_image, snakemake.output.per_image)
    picks.insert(0, "arch", arch)
    picks["cam_grid"] = f"{grid[0]}x{grid[1]}" if grid else ""
    write_csv_atomic(picks, snakemake.output.picks)
    log.info("%s: Figure 3 from %s; CAM grid %s; %d images per model for lung attention",
             arch, list(picks["image_id"]), grid, per_image.groupby("rep").size().max() if len(per_image) else 0)
