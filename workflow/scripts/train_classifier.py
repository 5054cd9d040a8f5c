"""Snakemake script: train one classifier ({arch} × {rep} × {seed}), select its epoch on val."""
from hideseek.rulelog import rule_logging

with rule_logging(snakemake.log[0]) as log:
    from hideseek import training

    p = snakemake.params
    recipe = p.recipe
    train = training.load_split(snakemake.input.pixels, snakemake.input.index, "train", recipe["input_size"],
                                per_class=recipe["train_images_per_class"])
    val = training.load_split(snakemake.input.pixels, snakemake.input.index, "val", recipe["input_size"])
    result = training.train_classifier(
        p.arch, recipe, train, val, int(p.seed), p.checkpoint_dir,
        device=p.device, threads=snakemake.threads,
        pretrained_weights=snakemake.input.get("weights"),
        checkpoint_every=p.checkpoint_every,
    )
    training.write_training_outputs(result, snakemake.output.model, snakemake.output.history, snakemake.output.info,
                                     extra=dict(representation=p.rep))
    if not p.keep_checkpoints:
        training.remove_checkpoints(p.checkpoint_dir)
    log.info("selected epoch %d of %d", result.best_epoch, recipe["epochs"])
