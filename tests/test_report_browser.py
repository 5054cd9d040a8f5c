"""The HTML report reads like an audit: the summary as a page, the verdict table on the landing
page's first screen in a real headless browser (Chromium), categories in the paper's order and
architecture labels. The browser test runs a tiny phantom target to the verdict (~1-3 min on 2
cores; scripts/screenshot_report.py does the same by hand and keeps the screenshot)."""

from __future__ import annotations

import base64
import json
import os
import re

import pytest

from conftest import REPO, load_module

from hideseek.errors import InputError
from hideseek.report.summary_page import markdown_to_html, section_table, select_columns, write_summary_page

SUMMARY = """# Audit summary

Data: built-in phantom, seed 0.

## The data

- Source only (`results/tables/table1_shortcut.csv`): scores **1.000**
  against chance 0.333 <a>.
- Source probe: *disabled*.

## Verdicts

Power: 12 images.

| architecture   | data                 | lungs_boxed_out      |   chance | learned   | verdict         |
|:---------------|:---------------------|:---------------------|---------:|:----------|:----------------|
| alexnet        | 0.900 [0.850, 0.950] | 0.800 [0.700, 0.900] |    0.333 | True      | non_lung_signal |
| vgg11          | 0.900 [0.850, 0.950] | 0.340 [0.250, 0.420] |    0.333 | True      | no_evidence     |

## alexnet

**alexnet** reaches accuracy 0.900.
"""


def test_summary_markdown_becomes_html():
    body = markdown_to_html(SUMMARY)
    assert "<h1>Audit summary</h1>" in body and body.count("<h2>") == 3
    # a bullet with its continuation line; code, bold, emphasis; HTML in the text is escaped
    assert ("<li>Source only (<code>results/tables/table1_shortcut.csv</code>): scores "
            "<strong>1.000</strong> against chance 0.333 &lt;a&gt;.</li>") in body
    assert "<li>Source probe: <em>disabled</em>.</li>" in body
    assert body.count("<tr>") == 3 and '<td style="text-align:right">0.333</td>' in body
    assert "<td style=\"text-align:left\">non_lung_signal</td>" in body
    assert "<p><strong>alexnet</strong> reaches accuracy 0.900.</p>" in body
    assert "|" not in body  # no table line left as text


def test_the_landing_table_is_the_verdict_sections_main_columns(tmp_path):
    table = section_table(SUMMARY)
    assert table.splitlines()[0].startswith("| architecture") and len(table.splitlines()) == 4
    brief = select_columns(table).splitlines()
    assert [c.strip() for c in brief[0].strip("|").split("|")] == [
        "architecture", "verdict", "data", "lungs_boxed_out", "chance"]
    assert "non_lung_signal" in brief[2]
    with pytest.raises(InputError, match="Verdicts"):
        section_table(SUMMARY.replace("## Verdicts", "## Other"))

    (tmp_path / "summary.md").write_text(SUMMARY)
    write_summary_page(tmp_path / "summary.md", tmp_path / "summary.html", tmp_path / "table.html")
    page = (tmp_path / "summary.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<title>Audit summary</title>" in page
    fragment = (tmp_path / "table.html").read_text()
    assert '<table id="verdict-table">' in fragment and fragment.count("<tr>") == 3
    assert "<h2>" not in fragment


def test_report_wrappers_put_categories_in_the_papers_order():
    """Every report() item is in one of the numbered categories (the report sorts them by name),
    and items with an {arch} wildcard carry an architecture label."""
    order = ["0. Verdict", "1. Data", "2. Segmentation", "3. Representations", "4. Tables 3–7",
             "5. Figure 3", "6. Audit"]
    assert order == sorted(order)
    wrappers = []
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        wrappers += re.findall(r"report\(\n(.*?)\n\s*\),", path.read_text(), flags=re.S)
    assert len(wrappers) >= 15
    for wrapper in wrappers:
        category = re.search(r'category="([^"]+)"', wrapper)
        assert category and category.group(1) in order, wrapper
        if "{{arch}}" in wrapper:
            assert 'labels={"architecture": "{arch}"' in wrapper, wrapper
    snakefile = (REPO / "Snakefile").read_text()
    assert 'report: "workflow/report/workflow.rst"' in snakefile


@pytest.mark.slow
def test_the_verdict_is_on_the_reports_first_screen_in_chromium(tmp_path):
    shot = load_module("hideseek_screenshot_report", REPO / "scripts" / "screenshot_report.py")
    if shot.find_chromium() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Chromium is missing on CI: .ci/run installs it (.ci/install_chromium.sh)")
        pytest.skip("no Chromium (apt-get install chromium, or .ci/install_chromium.sh)")
    report = shot.tiny_report(tmp_path / "run")
    html = report.read_text(encoding="utf-8")

    # the report's own data: categories in the paper's order, the summary page first
    categories = json.loads(re.search(r"var categories = (\{.*?\});\n", html).group(1))
    names = sorted(categories)
    assert names[0] == "0. Verdict" and names[-1] == "6. Audit", names
    assert categories["0. Verdict"]["Other"][0] == "results/audit/summary.html"
    results = json.loads(re.search(r"var results = (\{.*?\});\n", html).group(1))
    assert results["results/figures/figure3_gradcam_covidnet_cxr3a.png"]["labels"] == {
        "architecture": "covidnet_cxr3a"}
    # the summary is an HTML page of the report (the report embeds it as a data URI)
    page = results["results/audit/summary.html"]
    assert page["mime_type"] == "text/html"
    body = base64.b64decode(page["data_uri"].split("base64,", 1)[1]).decode()
    assert "<h1>Audit summary</h1>" in body and "<h2>Verdicts</h2>" in body and "<table>" in body

    # a real browser: the landing page renders the verdict table within the first screen
    result = shot.probe_report(report, tmp_path / "report_first_screen.png")
    print(json.dumps(result))
    assert result["found"], result
    assert result["on_first_screen"], result
    assert 0 <= result["description_top"] < result["top"], result  # the landing text starts on screen
    header, *rows = result["rows"]
    assert header[:2] == ["architecture", "verdict"], header
    assert [row[0] for row in rows] == ["covidnet_cxr3a"]
    assert rows[0][1] in {"non_lung_signal", "no_evidence", "inconclusive"}
    png = (tmp_path / "report_first_screen.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
