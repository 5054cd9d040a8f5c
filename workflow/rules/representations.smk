# The five ROI Hide-and-Seek representations (one image store each, with the same rows, order and
# shapes as results/data) and Figure 1.


rule representation:
    input:
        # `data` is the store image itself; every other representation needs the lung masks
        unpack(
            lambda wildcards: store_files(DATA_STORE)
            | ({} if wildcards.rep == "data" else store_files(MASK_STORE, "mask_{}"))
        ),
    output:
        **store_files(rep_store("{rep}")),
    log:
        f"{LOGS}/representation/{{rep}}.log",
    benchmark:
        f"{BENCH}/representation/{{rep}}.tsv"
    priority: MASK_PRIORITY
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
        **store_files(DATA_STORE),
        **store_files(MASK_STORE, "mask_{}"),
        qc=f"{SEG}/mask_qc.csv",
    output:
        report(
            f"{FIGURES}/figure1_representations.png",
            caption="../report/figure1.rst",
            category="3. Representations",
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
