# cxr-hideseek: the ROI Hide-and-Seek audit (Sadre et al., Sci. Rep. 2021) as a workflow.
# Run: make run   (or: snakemake --cores 2 --configfile config/config.yaml)
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


# Rejects unknown keys and wrong types (naming the key) and fills in every default.
validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/segmentation.smk"
include: "workflow/rules/representations.smk"
include: "workflow/rules/classification.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    table1,
    phantom_sheet,
    index_seg_sets,
    figure1,
    fetch_pretrained_weights,
    classifier_table,
    audit_tables,
    verdict,


rule all:
    default_target: True
    input:
        final_targets(),
