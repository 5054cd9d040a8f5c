# Lung segmentation: U-Net training, Table 2, and lung masks (+ QC) for the classification images.
# The device (segmentation.device) and the checkpoint folder (checkpoint_root) are read by the
# scripts at run time: moving to a GPU or elsewhere reruns nothing.


rule train_unet:
    input:
        sets=f"{RESULTS}/data/seg_sets.csv",
    output:
        model=f"{SEG}/unet.pt",
        history=f"{SEG}/unet_history.csv",
    log:
        f"{LOGS}/train_unet.log",
    benchmark:
        f"{BENCH}/train_unet.tsv"
    priority: MASK_PRIORITY
    conda:
        "../../envs/torch.yaml"
    threads: config["segmentation"]["threads"]
    resources:
        mem_mb=6000,
        runtime=360,
        gpu=config["resources"]["gpu"],
    params:
        # only what defines the model: changing inference or QC settings does not retrain
        cfg=seg_config("seed", "image_size", "network", "train"),
    script:
        "../scripts/train_unet.py"


rule evaluate_unet:
    input:
        sets=f"{RESULTS}/data/seg_sets.csv",
        model=f"{SEG}/unet.pt",
    output:
        csv=report(
            f"{TABLES}/table2_segmentation.csv",
            caption="../report/table2.rst",
            category="2. Segmentation",
        ),
        md=f"{TABLES}/table2_segmentation.md",
        per_image=f"{SEG}/table2_per_image.csv",
    log:
        f"{LOGS}/evaluate_unet.log",
    benchmark:
        f"{BENCH}/evaluate_unet.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["segmentation"]["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cfg=seg_config("inference"),
        dataset=plan.segmentation_dataset_description(config),
    script:
        "../scripts/evaluate_unet.py"


rule segment_images:
    input:
        **store_files(DATA_STORE),
        # the U-Net, unless the masks are the phantom's true ones
        **(
            {"model": f"{SEG}/unet.pt"}
            if config["segmentation"]["masks"] == "predicted"
            else {}
        ),
        # on the phantom, the true masks: used as the masks, or to score the predicted ones
        **(
            {"truth": f"{PHANTOM}/covidx/masks"}
            if config["classification_data"]["kind"] == "phantom"
            else {}
        ),
    output:
        pixels=store_files(MASK_STORE)["pixels"],
        index=store_files(MASK_STORE)["index"],
        qc=f"{SEG}/mask_qc.csv",
        summary=f"{SEG}/mask_summary.csv",
        summary_md=report(
            f"{SEG}/mask_summary.md",
            caption="../report/mask_summary.rst",
            category="2. Segmentation",
        ),
    log:
        f"{LOGS}/segment_images.log",
    benchmark:
        f"{BENCH}/segment_images.tsv"
    priority: MASK_PRIORITY
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
