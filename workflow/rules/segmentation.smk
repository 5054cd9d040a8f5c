# Lung segmentation: U-Net training, Table 2, and lung masks (+ QC) for the classification images.
# Helpers (SEG, segment_images_inputs, ...) live at the end of common.smk.


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
        # Resumable checkpoints live outside the declared outputs (Snakemake deletes those on failure).
        checkpoint_dir=f"{RESULTS}/checkpoints/unet",
    script:
        "../scripts/train_unet.py"


rule evaluate_unet:
    input:
        sets=f"{RESULTS}/data/seg_sets.csv",
        model=f"{SEG}/unet.pt",
    output:
        csv=report(
            f"{RESULTS}/tables/table2_segmentation.csv",
            caption="../report/table2.rst",
            category="Tables",
        ),
        md=f"{RESULTS}/tables/table2_segmentation.md",
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
        dataset=segmentation_dataset_name(),
    script:
        "../scripts/evaluate_unet.py"


rule segment_images:
    input:
        unpack(segment_images_inputs),
    output:
        pixels=f"{SEG}/masks/pixels.npy",
        index=f"{SEG}/masks/images.csv",
        qc=f"{SEG}/mask_qc.csv",
        summary=f"{SEG}/mask_summary.csv",
        summary_md=report(
            f"{SEG}/mask_summary.md",
            caption="../report/mask_summary.rst",
            category="Segmentation",
        ),
    log:
        f"{LOGS}/segment_images.log",
    benchmark:
        f"{BENCH}/segment_images.tsv"
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
