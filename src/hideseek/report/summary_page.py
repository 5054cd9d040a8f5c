"""results/audit/summary.md as an HTML page for `snakemake --report`, and its verdict table alone
for the report's landing page.

The report shows HTML results as pages but offers Markdown only as a download, and the lock has
no Markdown library (docutils reads reStructuredText only). The summary is written by the project
itself (hideseek.audit.verdict) in a small Markdown subset, and that subset is what this renders:
`#` headings, paragraphs, `- ` bullets (with indented continuation lines), pipe tables as pandas'
`to_markdown` writes them (tabulate "pipe", `:---:` alignment), `**bold**`, `*em*`, `` `code` ``.
Anything else stays visible as escaped text, never lost.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from ..errors import InputError
from ..io import write_text_atomic

# the heading of the summary's section whose table is the verdict table (hideseek.audit.verdict)
VERDICT_SECTION = "Verdicts"
# the landing page's narrow column shows these columns of it (in this order, those present);
# the page has them all
LANDING_COLUMNS = ("architecture", "verdict", "data", "lungs_boxed_out", "chance")
# the landing column is narrow (the report's description, 32rem): small type, CIs on one line
LANDING_STYLE = ("<style>#verdict-table { font-size: 0.8em; margin: 0.5em 0; } "
                 "#verdict-table td, #verdict-table th { white-space: nowrap; padding: 0.2em 0.5em; }</style>")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; line-height: 1.45;
       max-width: 72rem; margin: 1.5rem auto; padding: 0 1rem; color: #1f2937; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #cbd5e1; padding: 0.25rem 0.5rem; }
th { background: #f1f5f9; }
code { background: #f1f5f9; padding: 0 0.2rem; border-radius: 3px; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 1.6rem; }
"""

_INLINE = [
    (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"), r"<em>\1</em>"),
]
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def inline(text: str) -> str:
    """Escape HTML, then code spans (their content kept literal), bold and emphasis."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        part = html.escape(part, quote=False)
        for pattern, repl in _INLINE:
            part = pattern.sub(repl, part)
        out.append(part)
    return "".join(out)


def _cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|"):
        line = line[:-1]
    return [cell.strip() for cell in line.split("|")]


def _table(lines: list[str]) -> str:
    header, rule, body = _cells(lines[0]), _cells(lines[1]), [_cells(line) for line in lines[2:]]
    align = ["center" if c.startswith(":") and c.endswith(":") else "right" if c.endswith(":")
             else "left" for c in rule]

    def row(cells, tag):
        return "<tr>" + "".join(
            f'<{tag} style="text-align:{align[i] if i < len(align) else "left"}">{inline(c)}</{tag}>'
            for i, c in enumerate(cells)) + "</tr>"

    return ("<table>\n<thead>" + row(header, "th") + "</thead>\n<tbody>\n"
            + "\n".join(row(cells, "td") for cells in body) + "\n</tbody>\n</table>")


def markdown_to_html(text: str) -> str:
    """The body HTML of the Markdown subset described in the module docstring."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            level = len(heading.group(1))
            blocks.append(f"<h{level}>{inline(heading.group(2).strip())}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1].strip()):
            start = i
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                i += 1
            blocks.append(_table(lines[start:i]))
        elif re.match(r"^\s*[-*]\s+", line):
            items = []
            while i < len(lines) and lines[i].strip():
                if re.match(r"^\s*[-*]\s+", lines[i]):
                    items.append(re.sub(r"^\s*[-*]\s+", "", lines[i]))
                else:  # an indented (or lazy) continuation of the item
                    items[-1] += " " + lines[i].strip()
                i += 1
            blocks.append("<ul>\n" + "\n".join(f"<li>{inline(item)}</li>" for item in items) + "\n</ul>")
        else:
            para = []
            while (i < len(lines) and lines[i].strip() and not re.match(r"^(#{1,6})\s", lines[i])
                   and not re.match(r"^\s*[-*]\s+", lines[i]) and not lines[i].lstrip().startswith("|")):
                para.append(lines[i].strip())
                i += 1
            blocks.append(f"<p>{inline(' '.join(para))}</p>")
    return "\n".join(blocks)


def section_table(text: str, section: str = VERDICT_SECTION) -> str:
    """The first pipe table under the `## <section>` heading, as Markdown lines."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if re.match(rf"^#+\s+{re.escape(section)}\s*$", line))
    except StopIteration:
        raise InputError(f"the audit summary has no '## {section}' section with the verdict table") from None
    for i in range(start + 1, len(lines) - 1):
        if re.match(r"^#+\s", lines[i]):
            break
        if lines[i].lstrip().startswith("|") and _TABLE_RULE.match(lines[i + 1].strip()):
            end = i + 2
            while end < len(lines) and lines[end].lstrip().startswith("|"):
                end += 1
            return "\n".join(lines[i:end])
    raise InputError(f"the '## {section}' section of the audit summary has no table")


def select_columns(table_md: str, columns=LANDING_COLUMNS) -> str:
    """The pipe table with only `columns` (those it has, in that order); the architecture
    column (the first) is always kept."""
    lines = table_md.splitlines()
    header = _cells(lines[0])
    keep = [header.index(c) for c in columns if c in header] or [0]
    if 0 not in keep:
        keep.insert(0, 0)
    return "\n".join("| " + " | ".join(_cells(line)[i] for i in keep) + " |" for line in lines)


def page(body: str, title: str, source: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<!-- rendered from {html.escape(source)} by hideseek.report.summary_page -->\n"
        f"{body}\n</body>\n</html>\n"
    )


def write_summary_page(summary_md: str | Path, page_html: str | Path, table_html: str | Path) -> None:
    """The whole summary as a page, and the verdict table's main columns as an HTML fragment
    (with id `verdict-table`) that the report's landing description includes."""
    summary_md = Path(summary_md)
    text = summary_md.read_text(encoding="utf-8")
    write_text_atomic(page_html, page(markdown_to_html(text), "Audit summary", str(summary_md)))
    table = _table(select_columns(section_table(text)).splitlines()).replace("<table>", '<table id="verdict-table">', 1)
    write_text_atomic(table_html, f"<!-- the verdict table of {html.escape(str(summary_md))} -->\n"
                                  f"{LANDING_STYLE}\n{table}\n")
