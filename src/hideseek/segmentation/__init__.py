"""Segmentation stage (workflow/rules/segmentation.smk): segmentation-set pairing, the U-Net,
its training, inference and post-processing, lung-mask QC, and Table 2."""
