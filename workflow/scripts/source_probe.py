"""Snakemake script: the source probe (results/tables/source_probe.csv)."""
from hideseek.rulelog import rule_logging
from hideseek.audit.source_probe import probe_skip_reason, run_source_probe

with rule_logging(snakemake.log[0]) as log:
    import pandas as pd

    from hideseek.io import write_csv_atomic

    p = snakemake.params
    inp = snakemake.input
    stores = {rep: (inp[f"pixels_{rep}"], inp[f"index_{rep}"]) for rep in p.reps}
    reason = probe_skip_reason(pd.read_csv(stores[p.reps[0]][1]))
    if reason:
        log.warning("source probe skipped: %s", reason)
        table = pd.DataFrame([dict(representation=rep, true_class="all", note=f"skipped: {reason}") for rep in p.reps])
    else:
        table = run_source_probe(p.arch, p.recipe, stores, seed=p.seed, device=p.device,
                                       threads=snakemake.threads, n_boot=p.n_boot, boot_seed=p.boot_seed,
                                       level=p.level, checkpoint_root=p.checkpoint_dir)
    table.insert(0, "arch", p.arch)
    write_csv_atomic(table, snakemake.output[0])
    log.info("source probe:\n%s", table.to_string())
