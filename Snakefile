# cxr-hideseek: the ROI Hide-and-Seek audit (Sadre et al., Sci. Rep. 2021) as a workflow.
# Run: make run   (or: snakemake --cores 2 --configfile config/config.yaml)
import os
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

# The workflow's own folder. The default config, the schema and the library resolve from here,
# so the workflow runs with `--directory elsewhere` and as a module of another project's
# Snakefile (where workflow.basedir is the *calling* project's folder). Scripts, envs and report
# captions are already relative to the rule file that names them.
HIDESEEK_ROOT = Path(str(workflow.current_basedir))

# The one place that changes sys.path and the environment: the rule files import the library's
# standard-library-only modules (vocabulary, plan) from src/, and every job finds the library
# through PYTHONPATH (also inside conda envs and on cluster nodes, where the job re-reads this
# file). Without a src/ folder beside this file (e.g. a remote module) hideseek must be installed.
_SRC = HIDESEEK_ROOT / "src"
if _SRC.is_dir():
    sys.path.insert(0, str(_SRC))
    _PATHS = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(_SRC) not in _PATHS:
        os.environ.update(PYTHONPATH=os.pathsep.join([str(_SRC), *_PATHS]))


# The embedded default (the phantom); --configfile values are applied on top of it. When this
# workflow is used as a module, the calling project's config is used instead.
configfile: str(HIDESEEK_ROOT / "config" / "config.yaml")


# Rejects unknown keys and wrong types (naming the key) and fills in every default. A relative
# path: Snakemake reads it beside this file, also from a git or GitHub source (a deployed module).
validate(config, "workflow/schemas/config.schema.yaml")


# Clusters without conda: the image built from the Dockerfile (`snakemake --containerize`, every
# env of envs/ prebuilt) runs the jobs with `--sdm conda apptainer` when HIDESEEK_CONTAINER names
# it (docker://..., oras://... or a local .sif); unset, jobs use conda or the current environment.
containerized: os.environ.get("HIDESEEK_CONTAINER") or None


# The HTML report's landing page (snakemake --report): what was audited, how to read the
# verdict (its table is shown there), where each paper artefact is.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/segmentation.smk"
include: "workflow/rules/representations.smk"
include: "workflow/rules/classification.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/external.smk"
include: "workflow/rules/imported.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    table1,
    phantom_sheet,
    index_seg_sets,
    figure1,
    fetch_pretrained_weights,
    classifier_table,
    learning_curves,
    audit_tables,
    verdict,
    summary_page,


rule all:
    default_target: True
    input:
        final_targets(),
