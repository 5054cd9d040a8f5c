"""External test sets (issue 16): data from other sites, scored by every trained model.

Each set in ``external_test_sets`` is ingested into its own store under
``results/external/{name}/`` (the classification ingestion, test-only), checked for patients and
image copies shared with the training data, segmented by the trained U-Net, turned into the five
representations and scored by every model of the grid on the matching representation.

Parts: config (parse-time checks and the plan, standard library only: the rule files import
it), ingest (ingestion and the overlap check), tables (per-architecture external tables and the
cross-site generalisation table), gap (the verdict's generalisation-gap columns and sentences).
The built-in external set is the phantom's: :mod:`hideseek.data.phantom.external`.
"""
