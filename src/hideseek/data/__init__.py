"""Data stage (workflow/rules/data.smk): split files, ingestion, image decode, the image
store, Table 1, and the built-in phantom data set."""
