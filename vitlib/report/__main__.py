"""Build the report: `python -m vitlib.report results` (what `make report` runs).

    python -m vitlib.report RESULTS_DIR [--notebook notebooks/05_report.ipynb]

Builds REPORT.md, tables/ and figures/ with `vitlib.report.build_report`, then renders REPORT.md to
RESULTS_DIR/report.html: one self-contained page (figures embedded, wide tables scroll) to open in
any browser. With --notebook it instead executes that report notebook with papermill (parameter
`results_dir`) into RESULTS_DIR/<notebook> (a record of the build, as a study's report run keeps);
if the notebook did not write REPORT.md (or does not exist), it is built directly and the message
says so.
Reads RESULTS_DIR/runs/** only; never trains. Exit status: 0 done, 1 the notebook failed,
2 bad arguments.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from vitlib.fileio import atomic_write_text
from vitlib.report import VERDICTS, build_report


def execute_notebook(notebook: Path, results_dir: Path) -> Path:
    """Run `notebook` with papermill in a kernel of this interpreter; returns the executed copy."""
    from vitlib.experiments.kernel import execute_notebook as run
    from vitlib.experiments.kernel import python_kernel

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
.verdict { display: inline-block; padding: 0 .5em; border-radius: 1em; font-weight: 600; white-space: nowrap; }
.v-reproduced { background: #d1f0d6; color: #0f5323; } .v-partly { background: #fff1c2; color: #6b4e00; }
.v-within-noise { background: #e6e9ef; color: #3b4351; } .v-not-reproduced { background: #ffd8d3; color: #7a1b0c; }
.v-not-yet-run { background: #f1f1f1; color: #6e7781; font-weight: 400; }
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
    # a verdict alone in a cell, or in bold in a claim's section, as a coloured badge
    verdicts = "|".join(re.escape(v) for v in VERDICTS)

    def badge(match):
        return f'{match[1]}<span class="verdict v-{match[2].replace(" ", "-")}">{match[2]}</span>{match[3]}'

    body = re.sub(rf"(<td[^>]*>)({verdicts})(</td>)", badge, body)
    body = re.sub(rf"(Verdict: <strong>)({verdicts})(</strong>)", badge, body)
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
    parser.add_argument("--notebook", type=Path, default=None,
                        help="execute this report notebook (e.g. notebooks/05_report.ipynb) with papermill "
                             "to build the report, keeping the executed copy in RESULTS_DIR")
    args = parser.parse_args(argv)
    results_dir = Path(args.results_dir)
    if not results_dir.is_dir():
        print(f"error: results_dir {str(results_dir)!r} is not a directory", file=sys.stderr)
        return 2
    report_md = results_dir / "REPORT.md"
    if args.notebook is None:
        build_report(results_dir)
        html = render_html(report_md, results_dir / "report.html")
        print(f"wrote {report_md} and {html}")
        return 0
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
