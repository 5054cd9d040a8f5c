"""Snakemake script: train one classifier ({arch} × {rep} × {seed}), select its epoch on val."""
from hideseek.rulelog import rule_logging
from hideseek.classification.inputs import load_split
from hideseek.classification.training import remove_checkpoints, train_classifier, write_training_outputs

with rule_logging(snakemake.log[0]) as log:

    p = snakemake.params
    recipe = p.recipe
    train = load_split(snakemake.input.pixels, snakemake.input.index, "train", recipe["input_size"],
                                per_class=recipe["train_images_per_class"])
    val = load_split(snakemake.input.pixels, snakemake.input.index, "val", recipe["input_size"])
    result = train_classifier(
        p.arch, recipe, train, val, int(p.seed), p.checkpoint_dir,
        device=p.device, threads=snakemake.threads,
        pretrained_weights=snakemake.input.get("weights"),
        checkpoint_every=p.checkpoint_every,
    )
    write_training_outputs(result, snakemake.output.model, snakemake.output.history, snakemake.output.info,
                                     extra=dict(representation=p.rep))
    if not p.keep_checkpoints:
        remove_checkpoints(p.checkpoint_dir)
    log.info("selected epoch %d of %d", result.best_epoch, recipe["epochs"])
