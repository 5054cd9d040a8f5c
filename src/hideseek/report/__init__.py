"""The HTML report's own pages (workflow/rules/report.smk): the audit summary as a page."""
