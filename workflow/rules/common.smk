# Config access, paths, wildcard constraints and the final targets, shared by every rule file.
# A stage's inputs are written in its own rule file, in the rule (expressions, or lambdas where
# they depend on wildcards) from the path helpers below; what is derived from the config
# (checks, the source probe's architecture, descriptions quoted by the outputs) comes from
# hideseek.plan. Only standard-library modules of the library are imported here (the Snakefile
# puts src/ on sys.path): the scheduler never loads numpy, pandas or torch.
from hideseek import plan
from hideseek.classification.recipes import resolve_recipe
from hideseek.vocabulary import REPRESENTATIONS, TABLE_NUMBERS

plan.check_config(config)

RESULTS = "results"
PHANTOM = f"{RESULTS}/phantom"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
SEG = f"{RESULTS}/segmentation"
CLASSIFIERS = f"{RESULTS}/classifiers"
PREDICTIONS = f"{RESULTS}/predictions"
TABLES = f"{RESULTS}/tables"
FIGURES = f"{RESULTS}/figures"
EXTERNAL = f"{RESULTS}/external"  # external test sets (external.smk)

CLS = config["classification"]
CLS_ARCHS = list(CLS["architectures"])
CLS_SEEDS = [int(s) for s in CLS["seeds"]]
# The representations the grid trains and tests on; the workflow builds these.
CLS_REPS = list(CLS["representations"])
# Every (representation, seed) an architecture is trained on.
CLS_RUNS = [(rep, seed) for rep in CLS_REPS for seed in CLS_SEEDS]
# Models trained elsewhere (imported_models; imported.smk), read by the external sets too.
IMPORTED = config["imported_models"]
IMPORTED_DIR = f"{RESULTS}/imported"
AUDIT = config["audit"]
AUDIT_STATS = dict(
    n_boot=AUDIT["n_boot"], boot_seed=AUDIT["boot_seed"], level=AUDIT["ci_level"]
)


wildcard_constraints:
    arch="|".join(TABLE_NUMBERS),
    rep="|".join(REPRESENTATIONS),
    seed=r"\d+",
    num="[3-7]",


# Image stores (read with hideseek.data.store.ImageStore): the ingested images, the lung masks
# and each representation, all with the same rows, order and shapes.
DATA_STORE = f"{RESULTS}/data"
MASK_STORE = f"{SEG}/masks"
# Scheduling order when several jobs are ready (Snakemake `priority`; the total work is unchanged):
# the lung masks and the representations cut with them first, since every classifier but the `data`
# ones waits for them (a two-thread U-Net behind one-thread classifiers would wait for both cores
# to free at once); then Tables 3-7's jobs
# before the audit's (Grad-CAM, source probe), so the tables arrive first on a small machine.
MASK_PRIORITY = 20
TABLE_PRIORITY = 10


def rep_store(rep):
    return f"{RESULTS}/representations/{rep}"


def store_files(folder, key="{}"):
    """A store's pixels.npy and index CSV, as input/output entries named key.format("pixels")
    and key.format("index")."""
    return {
        key.format("pixels"): f"{folder}/pixels.npy",
        key.format("index"): f"{folder}/images.csv",
    }


def rep_stores(reps):
    """Entries pixels_<rep> / index_<rep> of several representation stores."""
    return {
        k: v
        for rep in reps
        for k, v in store_files(rep_store(rep), f"{{}}_{rep}").items()
    }


def run_folder(arch, rep, seed):
    """One trained classifier: model.pt, history.csv, train_info.json."""
    return f"{CLASSIFIERS}/{arch}/{rep}/seed{seed}"


def prediction_files(arch, table=None):
    """Per-image predictions of every model of `arch`; `table` (a requested Table number) must
    be the architecture's."""
    if table is not None and TABLE_NUMBERS[arch] != int(table):
        raise ValueError(f"table{table}_{arch}: {arch} is Table {TABLE_NUMBERS[arch]}")
    return expand(
        f"{PREDICTIONS}/{arch}/{{rep}}/seed{{seed}}.csv", rep=CLS_REPS, seed=CLS_SEEDS
    )


def first_seed_runs(arch):
    """Model and own-test predictions of each representation's first-seed model (Grad-CAM)."""
    seed = CLS_SEEDS[0]
    return {
        f"{kind}_{rep}": path
        for rep in CLS_REPS
        for kind, path in (
            ("model", f"{run_folder(arch, rep, seed)}/model.pt"),
            ("pred", f"{PREDICTIONS}/{arch}/{rep}/seed{seed}.csv"),
        )
    }


def pretrained_weights(arch):
    """{"weights": file} when `arch` starts from ImageNet weights (a local file, else the fetch
    rule's download), else {}."""
    if not plan.uses_pretrained(CLS, arch):
        return {}
    local = (CLS["pretrained_files"] or {}).get(arch)
    return dict(weights=local or f"{CLS['weights_cache']}/{arch}_imagenet1k_v1.pth")


def classification_files():
    """Image folder and split files (or labels CSV) of the classification data (the phantom's or the user's)."""
    data = config["classification_data"]
    if data["kind"] == "phantom":
        return dict(
            image_dir=f"{PHANTOM}/covidx/images",
            train_split=f"{PHANTOM}/covidx/train.txt",
            test_split=f"{PHANTOM}/covidx/test.txt",
        )
    # a folder of images (DICOM or PNG) and a labels CSV
    if data["kind"] == "labels_csv":
        return dict(image_dir=data["image_dir"], labels_csv=data["labels_csv"])
    return dict(
        image_dir=data["image_dir"],
        train_split=data["train_split"],
        test_split=data.get("test_split"),
    )


def segmentation_sets():
    """Training and test segmentation folders (the phantom's or the user's)."""
    data = config["segmentation_data"]
    if data["kind"] == "phantom":
        seg = f"{PHANTOM}/seg"
        return dict(
            train=dict(
                images=f"{seg}/train/images",
                masks=f"{seg}/train/masks",
                **plan.TANG_PAIRING,
            ),
            test_sets={
                name: dict(images=f"{seg}/{name}/images", masks=f"{seg}/{name}/masks")
                for name in ("nih", "cohen")
            },
        )
    return dict(train=data["train"], test_sets=data["test_sets"])


def seg_config(*keys):
    """A rule's slice of the segmentation config: a change reruns only the rules it concerns."""
    return {key: config["segmentation"][key] for key in keys}


def external_rep_stores(ext, reps):
    """An external set's store of each representation, as inputs pixels_{rep} / index_{rep}."""
    return {
        k: v
        for rep in reps
        for k, v in store_files(
            f"{EXTERNAL}/{ext}/representations/{rep}", f"{{}}_{rep}"
        ).items()
    }


def imported_external_file(model, ext, name):
    """One imported model's output on an external set (imported.smk)."""
    return f"{IMPORTED_DIR}/{model}/external/{ext}/{name}"


# --- Final targets ----------------------------------------------------------------------------
def final_targets():
    phantom = config["classification_data"]["kind"] == "phantom"
    return [
        f"{RESULTS}/data/seg_sets.csv",
        f"{TABLES}/table1_data.csv",
        f"{TABLES}/table1_data.md",
        *([f"{FIGURES}/phantom_samples.png"] if phantom else []),
        *segmentation_targets(),
        *classifier_table_targets(),
        *expand(f"{FIGURES}/learning_curves_{{arch}}.png", arch=CLS_ARCHS),
        *audit_arch_targets(),
        *verdict_targets(),
        *EXTERNAL_TARGETS,  # external_test_sets: workflow/rules/external.smk
        *IMPORTED_TARGETS,  # imported_models: workflow/rules/imported.smk
    ]


def segmentation_targets():
    return [
        f"{TABLES}/table2_segmentation.csv",
        f"{TABLES}/table2_segmentation.md",
        f"{SEG}/mask_summary.md",
        f"{FIGURES}/figure1_representations.png",
        *(store_files(rep_store(rep))["pixels"] for rep in CLS_REPS),
    ]


def classifier_table_targets():
    """Tables 3-7, one per configured architecture."""
    return [
        f"{TABLES}/table{TABLE_NUMBERS[arch]}_{arch}.{ext}"
        for arch in CLS_ARCHS
        for ext in ("csv", "md")
    ]


def audit_arch_targets():
    """Figure 3, lung attention, test-time hiding and comparisons ('data' is in the grid: check_config)."""
    return [
        *expand(f"{FIGURES}/figure3_gradcam_{{arch}}.png", arch=CLS_ARCHS),
        *expand(f"{TABLES}/lung_attention_{{arch}}.csv", arch=CLS_ARCHS),
        *expand(f"{TABLES}/test_time_hiding_{{arch}}.csv", arch=CLS_ARCHS),
        *expand(f"{TABLES}/comparison_{{arch}}.csv", arch=CLS_ARCHS),
    ]


def source_probe_targets():
    return [f"{TABLES}/source_probe.csv"] if plan.runs_source_probe(config) else []


def verdict_targets():
    return [
        f"{RESULTS}/audit/verdict.csv",
        f"{RESULTS}/audit/summary.md",
        f"{RESULTS}/audit/summary.html",  # the report's first page (report.smk: summary_page)
        *source_probe_targets(),
    ]
