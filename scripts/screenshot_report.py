#!/usr/bin/env python
"""Open the workflow's HTML report in a real headless browser: is the verdict on the first screen?

    .venv/bin/python scripts/screenshot_report.py results/report.html            # an existing report
    .venv/bin/python scripts/screenshot_report.py --tiny-run /tmp/hs-report      # tiny phantom run first

Needs Chromium (Debian: `apt-get install chromium`; .ci/install_chromium.sh). The report itself
is left as it is: a copy of it gets a small script that, once the page has rendered, writes the
position of the landing page's verdict table (`#verdict-table`, from workflow/report/workflow.rst)
and the window's size into the DOM; Chromium's `--dump-dom` prints it, and a second Chromium
call saves a screenshot of the first screen. Prints one JSON line: whether the table was found,
whether it lies wholly within the first screen, its rows' text, the screenshot's path.
--tiny-run first runs a tiny phantom target to the verdict (one architecture, 32 px, one epoch,
~1-3 min on 2 cores) in the given folder and builds its report there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
WINDOW = (1400, 900)
PROBE_ID = "hideseek-report-probe"

# One architecture, the two representations the verdict needs, the phantom's true lung masks
# (no U-Net), 32 px, one epoch; the verdict is `inconclusive` at this size (12 test images).
TINY = {
    "phantom": {"n_train_per_class": 12, "n_test_per_class": 4, "long_side": [64, 72],
                "seg": {"n_train_tags": 2, "images_per_tag": 2, "n_nih": 2, "n_cohen": 2}},
    "store": {"long_side": 48},
    "segmentation": {"masks": "ground_truth"},
    "classification": {
        "architectures": ["covidnet_cxr3a"],
        "representations": ["data", "lungs_boxed_out"],
        "seeds": [0],
        "train_images_per_class": 6,
        "resources": {"threads": 1, "mem_mb": 2000},
        "models": {"covidnet_cxr3a": {"input_size": 32, "width": 0.125, "epochs": 1,
                                      "bn_recalibration_images": 8}},
    },
    "audit": {"n_boot": 100, "gradcam": {"n_images": 6}, "source_probe": {"enabled": False}},
}
TINY_TARGET = "results/audit/summary.html"

# Runs in the report's page: waits for React to render the landing page, then records where the
# verdict table is. Polls with setTimeout, which Chromium's virtual time budget advances.
PROBE_JS = """
<script>
(function () {
  var tries = 0;
  function probe() {
    var table = document.getElementById("verdict-table");
    if (!table && tries++ < 100) { setTimeout(probe, 100); return; }
    var out = {found: !!table, innerWidth: window.innerWidth, innerHeight: window.innerHeight};
    // the landing description (docutils wraps it in div.document): does it start on screen?
    var desc = document.querySelector("div.document");
    out.description_top = desc ? desc.getBoundingClientRect().top : null;
    if (table) {
      var r = table.getBoundingClientRect();
      out.top = r.top; out.bottom = r.bottom; out.left = r.left; out.right = r.right;
      out.rows = Array.from(table.rows).map(function (row) {
        return Array.from(row.cells).map(function (c) { return c.textContent.trim(); });
      });
    }
    var pre = document.createElement("pre");
    pre.id = "%s";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  window.addEventListener("load", function () { setTimeout(probe, 100); });
})();
</script>
""" % PROBE_ID


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium(browser: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="hideseek-chromium-")
    try:
        return subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=15000", *args],
            capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def probe_report(report: Path, screenshot: Path, browser: str | None = None) -> dict:
    """Where the verdict table lies on the report's first screen, and a screenshot of it."""
    browser = browser or find_chromium()
    if browser is None:
        raise SystemExit("no Chromium found: apt-get install chromium (or .ci/install_chromium.sh)")
    report, screenshot = Path(report).resolve(), Path(screenshot).resolve()
    html = report.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="hideseek-report-probe-") as tmp:
        probed = Path(tmp) / "report_probe.html"
        at = html.rfind("</body>")
        probed.write_text(html[:at] + PROBE_JS + html[at:] if at >= 0 else html + PROBE_JS, encoding="utf-8")
        dom = _chromium(browser, "--dump-dom", probed.as_uri())
    start = dom.stdout.find(f'<pre id="{PROBE_ID}">')
    if start < 0:
        raise RuntimeError(f"the probe did not run in Chromium (rc {dom.returncode}):\n{dom.stderr[-3000:]}")
    raw = dom.stdout[start:].split(">", 1)[1].split("</pre>", 1)[0]
    result = json.loads(raw.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    result["on_first_screen"] = bool(
        result["found"] and result["top"] >= 0 and result["bottom"] <= result["innerHeight"]
        and result["left"] >= 0 and result["right"] <= result["innerWidth"])
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    shot = _chromium(browser, f"--screenshot={screenshot}", report.as_uri())
    if not screenshot.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot (rc {shot.returncode}):\n{shot.stderr[-3000:]}")
    result["screenshot"] = str(screenshot)
    return result


def tiny_report(workdir: Path, timeout: float = 900) -> Path:
    """Run the tiny phantom target to the verdict in `workdir` and build its report there."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    base = [SNAKEMAKE, TINY_TARGET, "--cores", "2", "-s", str(REPO / "Snakefile"), "--directory", str(workdir)]
    for extra in ([], ["--report", str(workdir / "report.html")]):
        done = subprocess.run([*base, *extra, "--configfile", str(config)],  # --configfile: last
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(base + extra)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return workdir / "report.html"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("report", nargs="?", type=Path, help="the report to open (default: results/report.html)")
    parser.add_argument("--tiny-run", type=Path, metavar="DIR", help="run a tiny phantom target in DIR first")
    parser.add_argument("--screenshot", type=Path, help="where to save the PNG (default: beside the report)")
    args = parser.parse_args(argv)
    if args.tiny_run:
        report = tiny_report(args.tiny_run)
    else:
        report = args.report or Path("results/report.html")
        if not report.is_file():
            parser.error(f"{report} not found: run `make run`, or pass --tiny-run DIR")
    result = probe_report(report, args.screenshot or report.with_name("report_first_screen.png"))
    print(json.dumps(result))
    return 0 if result["on_first_screen"] else 1


if __name__ == "__main__":
    sys.exit(main())
