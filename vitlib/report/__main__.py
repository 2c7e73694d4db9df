"""Build the report: `python -m vitlib.report results` (what `make report` runs).

    python -m vitlib.report RESULTS_DIR [--notebook notebooks/05_report.ipynb]

Executes the report notebook with papermill (parameter `results_dir`) into
RESULTS_DIR/05_report.ipynb, then renders it without its code cells to RESULTS_DIR/report.html.
The notebook writes REPORT.md, tables/ and figures/ through `vitlib.report.build_report`; if it
did not (or the notebook does not exist yet), REPORT.md is built directly and the message says so.
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
    import papermill

    from vitlib.experiments import python_kernel

    executed = results_dir / notebook.name
    with python_kernel() as kernel:
        papermill.execute_notebook(str(notebook), str(executed),
                                   parameters={"results_dir": str(results_dir)},
                                   kernel_name=kernel, language="python", progress_bar=False,
                                   cwd=os.getcwd())  # so a relative results_dir means the same
    return executed


def render_html(executed: Path, out_html: Path) -> Path:
    """The executed notebook as HTML, code cells hidden (outputs and Markdown only)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(exclude_input=True).from_filename(str(executed))
    atomic_write_text(out_html, body)
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
        print(f"{args.notebook} does not exist yet: built {report_md} directly (no report.html)")
        return 0
    start = time.time()
    try:
        executed = execute_notebook(args.notebook, results_dir)
    except Exception as err:  # papermill's error names the failing cell; the partial notebook stays
        print(f"error: {args.notebook} failed: {err}", file=sys.stderr)
        return 1
    html = render_html(executed, results_dir / "report.html")
    if not report_md.is_file() or report_md.stat().st_mtime < start:
        build_report(results_dir)
        print(f"{args.notebook} did not write {report_md}: built it directly")
    print(f"wrote {executed}, {html} and {report_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
