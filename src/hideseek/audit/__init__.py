"""Audit stage (workflow/rules/explain.smk, report.smk): representation comparisons and
test-time hiding, Grad-CAM and lung attention (Figure 3), the source probe, and the verdict."""
