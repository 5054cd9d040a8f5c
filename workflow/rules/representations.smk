# The five ROI Hide-and-Seek representations (one image store each) and Figure 1.


rule representation:
    input:
        unpack(representation_inputs),
    output:
        pixels=f"{RESULTS}/representations/{{rep}}/pixels.npy",
        index=f"{RESULTS}/representations/{{rep}}/images.csv",
    log:
        f"{LOGS}/representation/{{rep}}.log",
    benchmark:
        f"{BENCH}/representation/{{rep}}.tsv"
    wildcard_constraints:
        rep="|".join(ALL_REPRESENTATIONS),
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../scripts/representation.py"


rule figure1:
    input:
        pixels=f"{RESULTS}/data/pixels.npy",
        index=f"{RESULTS}/data/images.csv",
        mask_pixels=f"{SEG}/masks/pixels.npy",
        mask_index=f"{SEG}/masks/images.csv",
        qc=f"{SEG}/mask_qc.csv",
    output:
        report(
            f"{RESULTS}/figures/figure1_representations.png",
            caption="../report/figure1.rst",
            category="Figures",
        ),
    log:
        f"{LOGS}/figure1.log",
    benchmark:
        f"{BENCH}/figure1.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        partition=config["segmentation"]["figure1_partition"],
    script:
        "../scripts/figure1.py"
