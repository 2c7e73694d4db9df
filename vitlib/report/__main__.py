"""Build the report: `python -m vitlib.report results` (what `make report` runs).

    python -m vitlib.report RESULTS_DIR [--notebook notebooks/05_report.ipynb]

Executes the report notebook with papermill (parameter `results_dir`) into
RESULTS_DIR/05_report.ipynb (the record of the run), which writes REPORT.md, tables/ and figures/
through `vitlib.report.build_report`; if it did not (or the notebook does not exist), REPORT.md is
built directly and the message says so. REPORT.md is then rendered to RESULTS_DIR/report.html: one
self-contained page (figures embedded, wide tables scroll) to open in any browser.
Reads RESULTS_DIR/runs/** only; never trains. Exit status: 0 done, 1 the notebook failed,
2 bad arguments.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import vitlib
from vitlib.report import build_report
from vitlib.fileio import atomic_write_text

DEFAULT_NOTEBOOK = Path(vitlib.__file__).resolve().parent.parent / "notebooks" / "05_report.ipynb"


def execute_notebook(notebook: Path, results_dir: Path) -> Path:
    """Run `notebook` with papermill in a kernel of this interpreter; returns the executed copy."""
    from vitlib.experiments.kernel import execute_notebook as run, python_kernel

    with python_kernel() as kernel:  # cwd: so that a relative results_dir means the same in the kernel
        return run(notebook, results_dir / notebook.name, {"results_dir": str(results_dir)}, kernel,
                   cwd=os.getcwd())


STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2328; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.7rem; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; margin-top: 2.5rem; }
.table { overflow-x: auto; margin: 1rem 0; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } tr:nth-child(even) td { background: #fbfcfd; }
td { max-width: 28rem; overflow-wrap: break-word; }  /* words whole: short columns keep their width */
img { max-width: 100%; height: auto; display: block; margin: 1rem 0; }
code { background: #f6f8fa; padding: 0 3px; border-radius: 3px; font-size: 90%; overflow-wrap: anywhere; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; }
blockquote { margin: 1rem 0; padding: .5rem 1rem; background: #fff8c5; border-left: 4px solid #d4a72c; }
"""


def render_html(report_md: Path, out_html: Path) -> Path:
    """REPORT.md as one self-contained HTML page: its own title, the PNG figures embedded (data
    URIs, so the file can be mailed or moved alone), wide tables in a scrolling box."""
    import base64
    import html
    import re

    import mistune

    md_dir = Path(report_md).parent
    body = mistune.create_markdown(plugins=["table"], escape=False)(Path(report_md).read_text())

    def embed(match):
        path = md_dir / html.unescape(match[1])
        if not path.is_file():
            return match[0]
        data = base64.b64encode(path.read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+\.png)"', embed, body)
    body = body.replace("<table>", '<div class="table"><table>').replace("</table>", "</table></div>")
    title = re.search(r"<h1>(.*?)</h1>", body)
    page = (f"<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{re.sub('<[^>]+>', '', title[1]) if title else 'Report'}</title>\n"
            f"<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n")
    atomic_write_text(out_html, page)
    return out_html


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitlib.report", description=__doc__.split("\n")[0])
    parser.add_argument("results_dir", nargs="?", default="results",
                        help="folder holding runs/ (default: results)")
    parser.add_argument("--notebook", type=Path, default=DEFAULT_NOTEBOOK,
                        help=f"report notebook (default: {DEFAULT_NOTEBOOK})")
    args = parser.parse_args(argv)
    results_dir = Path(args.results_dir)
    if not results_dir.is_dir():
        print(f"error: results_dir {str(results_dir)!r} is not a directory", file=sys.stderr)
        return 2
    report_md = results_dir / "REPORT.md"
    if not args.notebook.is_file():
        build_report(results_dir)
        html = render_html(report_md, results_dir / "report.html")
        print(f"{args.notebook} does not exist: built {report_md} and {html} directly")
        return 0
    start = time.time()
    try:
        executed = execute_notebook(args.notebook, results_dir)
    except Exception as err:  # papermill's error names the failing cell; the partial notebook stays
        print(f"error: {args.notebook} failed: {err}", file=sys.stderr)
        return 1
    if not report_md.is_file() or report_md.stat().st_mtime < start:
        build_report(results_dir)
        print(f"{args.notebook} did not write {report_md}: built it directly")
    html = render_html(report_md, results_dir / "report.html")
    print(f"wrote {executed}, {report_md} and {html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
