# External test sets (external_test_sets): each set is ingested into its own store under
# results/external/{ext}/, checked against the training data, segmented by the same U-Net, turned
# into the representations and scored by every trained model on the matching representation;
# then one table per set and architecture, and the cross-site generalisation table.
# Segmentation and representations reuse the main stages' scripts (the same library calls).
from hideseek.external import config as external_config

EXTERNAL_SETS = external_config.external_sets(config)


wildcard_constraints:
    ext="|".join(EXTERNAL_SETS) or "(?!)",


localrules:
    external_table,
    external_generalisation,


EXTERNAL_TARGETS = external_config.targets(EXTERNAL_SETS, EXTERNAL, TABLES, CLS_ARCHS)
# the verdict's generalisation gap (report.smk), when external sets are configured
EXTERNAL_GENERALISATION = external_config.generalisation_targets(EXTERNAL_SETS, TABLES)
EXTERNAL_DESCRIPTIONS = {
    ext: external_config.description(ext, EXTERNAL_SETS[ext], config["phantom"])
    for ext in EXTERNAL_SETS
}
# every trained architecture's and every imported model's (imported.smk) predictions on each set
EXTERNAL_PREDICTIONS = {
    ext: external_config.prediction_files(EXTERNAL, ext, CLS_ARCHS)
    + [imported_external_file(model, ext, "predictions.csv") for model in IMPORTED]
    for ext in EXTERNAL_SETS
}
IMPORTED_INTERNAL_PREDICTIONS = [
    f"{IMPORTED_DIR}/{model}/predictions.csv" for model in IMPORTED
]


rule external_phantom:
    output:
        split=f"{EXTERNAL}/{{ext}}/phantom/covidx/external.txt",
        images=directory(f"{EXTERNAL}/{{ext}}/phantom/covidx/images"),
        masks=directory(f"{EXTERNAL}/{{ext}}/phantom/covidx/masks"),
    log:
        f"{LOGS}/external/{{ext}}/phantom.log",
    benchmark:
        f"{BENCH}/external/{{ext}}/phantom.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        phantom=config["phantom"],
        ext=lambda wildcards: EXTERNAL_SETS[wildcards.ext],
        out_dir=lambda wildcards, output: str(Path(output.split).parents[1]),
    script:
        "../scripts/external_phantom.py"


rule external_ingest:
    input:
        # the training store: external patients and images must not be in it
        **store_files(DATA_STORE, "train_{}"),
        labels=lambda wildcards: external_config.listing_file(
            EXTERNAL_SETS, EXTERNAL, wildcards.ext
        ),
        images=lambda wildcards: external_config.image_inputs(
            EXTERNAL_SETS, EXTERNAL, wildcards.ext
        ),
    output:
        **store_files(f"{EXTERNAL}/{{ext}}/data"),
        dropped=f"{EXTERNAL}/{{ext}}/data/dropped_lines.csv",
        duplicates=f"{EXTERNAL}/{{ext}}/data/duplicates.csv",
        overlap=f"{EXTERNAL}/{{ext}}/data/overlap.csv",
        report=f"{EXTERNAL}/{{ext}}/data/ingest_report.md",
    log:
        f"{LOGS}/external/{{ext}}/ingest.log",
    benchmark:
        f"{BENCH}/external/{{ext}}/ingest.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        ext=lambda wildcards: EXTERNAL_SETS[wildcards.ext],
        files=lambda wildcards: external_config.input_files(
            EXTERNAL_SETS, EXTERNAL, wildcards.ext
        ),
        store=config["store"],
    script:
        "../scripts/external_ingest.py"


rule external_segment:
    input:
        # the U-Net the training images were segmented with (unless the masks are the phantom's);
        # on the external phantom its true masks: used as the masks, or to score the predicted ones
        unpack(
            lambda wildcards: store_files(f"{EXTERNAL}/{wildcards.ext}/data")
            | (
                {"model": f"{SEG}/unet.pt"}
                if config["segmentation"]["masks"] == "predicted"
                else {}
            )
            | (
                {"truth": f"{EXTERNAL}/{wildcards.ext}/phantom/covidx/masks"}
                if external_config.is_phantom(EXTERNAL_SETS[wildcards.ext])
                else {}
            )
        ),
    output:
        **store_files(f"{EXTERNAL}/{{ext}}/segmentation/masks"),
        qc=f"{EXTERNAL}/{{ext}}/segmentation/mask_qc.csv",
        summary=f"{EXTERNAL}/{{ext}}/segmentation/mask_summary.csv",
        summary_md=f"{EXTERNAL}/{{ext}}/segmentation/mask_summary.md",
    log:
        f"{LOGS}/external/{{ext}}/segment_images.log",
    benchmark:
        f"{BENCH}/external/{{ext}}/segment_images.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["segmentation"]["threads"]
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=config["resources"]["gpu"],
    params:
        cfg=seg_config("masks", "inference", "qc"),
    script:
        "../scripts/segment_images.py"


rule external_representation:
    input:
        unpack(
            lambda wildcards: store_files(f"{EXTERNAL}/{wildcards.ext}/data")
            | (
                {}
                if wildcards.rep == "data"
                else store_files(
                    f"{EXTERNAL}/{wildcards.ext}/segmentation/masks",
                    "mask_{}",
                )
            )
        ),
    output:
        **store_files(f"{EXTERNAL}/{{ext}}/representations/{{rep}}"),
    log:
        f"{LOGS}/external/{{ext}}/representation/{{rep}}.log",
    benchmark:
        f"{BENCH}/external/{{ext}}/representation/{{rep}}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../scripts/representation.py"


rule external_predictions:
    input:
        # every trained model of the architecture, and the external store of each representation
        unpack(
            lambda wildcards: {
                f"model_{rep}_seed{seed}": f"{run_folder(wildcards.arch, rep, seed)}/model.pt"
                for rep, seed in CLS_RUNS
            }
            | external_rep_stores(wildcards.ext, CLS_REPS)
        ),
    output:
        f"{EXTERNAL}/{{ext}}/predictions/{{arch}}.csv",
    log:
        f"{LOGS}/external/{{ext}}/predictions/{{arch}}.log",
    benchmark:
        f"{BENCH}/external/{{ext}}/predictions/{{arch}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: CLS["resources"]["threads"]
    resources:
        mem_mb=CLS["resources"]["mem_mb"],
        runtime=CLS["resources"]["evaluate_runtime"],
        gpu=config["resources"]["gpu"],
    params:
        runs=CLS_RUNS,
    script:
        "../scripts/external_predictions.py"


rule external_table:
    input:
        f"{EXTERNAL}/{{ext}}/predictions/{{arch}}.csv",
    output:
        csv=f"{TABLES}/external_{{ext}}_{{arch}}.csv",
        md=f"{TABLES}/external_{{ext}}_{{arch}}.md",
    log:
        f"{LOGS}/external/{{ext}}/table_{{arch}}.log",
    benchmark:
        f"{BENCH}/external/{{ext}}/table_{{arch}}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        **AUDIT_STATS,
        model=lambda wildcards: wildcards.arch,
        representations=CLS_REPS,
        description=lambda wildcards: EXTERNAL_DESCRIPTIONS[wildcards.ext],
    script:
        "../scripts/external_table.py"


rule external_generalisation:
    input:
        # every trained model's and every imported model's (imported.smk) predictions
        internal=[path for arch in CLS_ARCHS for path in prediction_files(arch)]
        + IMPORTED_INTERNAL_PREDICTIONS,
        external=[path for paths in EXTERNAL_PREDICTIONS.values() for path in paths],
    output:
        csv=f"{TABLES}/external_generalisation.csv",
        md=f"{TABLES}/external_generalisation.md",
    log:
        f"{LOGS}/external/generalisation.log",
    benchmark:
        f"{BENCH}/external/generalisation.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        **AUDIT_STATS,
        archs=CLS_ARCHS + list(IMPORTED),
        representations=CLS_REPS,
        sets=EXTERNAL_PREDICTIONS,
        descriptions=EXTERNAL_DESCRIPTIONS,
    script:
        "../scripts/external_generalisation.py"
