# Data stage: built-in phantom, ingestion into the preprocessed image store, Table 1.


rule phantom:
    output:
        train=f"{PHANTOM}/covidx/train.txt",
        test=f"{PHANTOM}/covidx/test.txt",
        images=directory(f"{PHANTOM}/covidx/images"),
        masks=directory(f"{PHANTOM}/covidx/masks"),
        seg=directory(f"{PHANTOM}/seg"),
    log:
        f"{LOGS}/phantom.log",
    benchmark:
        f"{BENCH}/phantom.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        phantom=config["phantom"],
        out_dir=lambda wildcards, output: str(Path(output.train).parents[1]),
    script:
        "../scripts/make_phantom.py"


rule phantom_sheet:
    input:
        train=f"{PHANTOM}/covidx/train.txt",
        images=f"{PHANTOM}/covidx/images",
    output:
        report(
            f"{FIGURES}/phantom_samples.png",
            caption="../report/phantom_samples.rst",
            category="1. Data",
        ),
    log:
        f"{LOGS}/phantom_sheet.log",
    benchmark:
        f"{BENCH}/phantom_sheet.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/phantom_sheet.py"


rule ingest:
    input:
        **{
            k: path
            for k, path in classification_files().items()
            if k != "image_dir" and path
        },
        # Every listed image that exists (the phantom's are made with its split files): a
        # restored or changed image reruns ingest. A lambda, so only a DAG with ingest reads them.
        images=lambda wildcards: (
            plan.listed_images(**classification_files())
            if config["classification_data"]["kind"] == "covidx"
            else []
        ),
        labelled_images=lambda wildcards: (
            plan.labels_csv_images(**classification_files())
            if config["classification_data"]["kind"] == "labels_csv"
            else []
        ),
    output:
        index=store_files(DATA_STORE)["index"],
        pixels=store_files(DATA_STORE)["pixels"],
        dropped=f"{RESULTS}/data/dropped_lines.csv",
        duplicates=f"{RESULTS}/data/duplicates.csv",
        report=f"{RESULTS}/data/ingest_report.md",
    log:
        f"{LOGS}/ingest.log",
    benchmark:
        f"{BENCH}/ingest.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        data=config["classification_data"],
        files=classification_files(),
        long_side=config["store"]["long_side"],
        bits_stored=config["store"]["bits_stored"],
    script:
        "../scripts/ingest.py"


rule table1:
    input:
        index=store_files(DATA_STORE)["index"],
        duplicates=f"{RESULTS}/data/duplicates.csv",
    output:
        csv=report(
            f"{TABLES}/table1_data.csv",
            caption="../report/table1.rst",
            category="1. Data",
        ),
        md=f"{TABLES}/table1_data.md",
        shortcut=f"{TABLES}/table1_shortcut.csv",
    log:
        f"{LOGS}/table1.log",
    benchmark:
        f"{BENCH}/table1.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        dataset=plan.dataset_description(config),
    script:
        "../scripts/table1.py"


rule index_seg_sets:
    input:
        [f"{PHANTOM}/seg"] if config["segmentation_data"]["kind"] == "phantom" else [],
    output:
        sets=f"{RESULTS}/data/seg_sets.csv",
        # pairs left out by segmentation_data.mask_checks (on_bad: drop); empty otherwise
        dropped=f"{RESULTS}/data/seg_sets_dropped.csv",
    log:
        f"{LOGS}/index_seg_sets.log",
    benchmark:
        f"{BENCH}/index_seg_sets.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        sets=segmentation_sets(),
        mask_checks=config["segmentation_data"]["mask_checks"],
    script:
        "../scripts/index_seg_sets.py"
