"""Look at report.html as a reader does, in a real browser: headless Chromium (Debian's package
`chromium`) opens the file at each width (1,000 and 1,400 px), checks that every image loads and
that no table overflows the text column unless it sits in a box that scrolls, that the page never
scrolls sideways, and takes screenshots of the whole page at each width to look at (a page taller
than Chromium's capture limit in consecutive parts). Nothing is written beside the report: the
page it checks is a copy in a temporary folder (relative links resolve to the report's folder).

    python -m vitlib.report.browser results/report.html --out scratch/report-check   # make report-check

Exit status 0 when every check passes, 1 when one fails (each problem is printed), 2 when the file
or Chromium is missing (apt-get install chromium, or VITLIB_CHROMIUM=/path/to/chrome).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTHS = (1000, 1400)
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MAX_SCREENSHOT_PX = 16000  # Chromium's own limit on a capture's height is near this

# runs in the page after it has loaded; writes its findings into <pre id="vitlib-check">
CHECK_JS = """
window.addEventListener("load", () => {
  const problems = [];
  const images = [...document.images];
  images.forEach((img, i) => {
    if (!img.complete || img.naturalWidth === 0)
      problems.push(`image ${i + 1} (${img.alt || img.src.slice(0, 60)}) does not load`);
  });
  const column = (document.querySelector("main") || document.body).getBoundingClientRect();
  const tables = [...document.querySelectorAll("table")];
  tables.forEach((table, i) => {
    const box = table.parentElement;
    if (box && ["auto", "scroll"].includes(getComputedStyle(box).overflowX)
        && box.getBoundingClientRect().right <= column.right + 1) return;  // it scrolls inside the column
    const over = table.getBoundingClientRect().right - column.right;
    if (over > 1) {
      const head = [...table.querySelectorAll("th")].map(th => th.textContent.trim()).slice(0, 3).join(", ");
      problems.push(`table ${i + 1} (${head}) overflows the text column by ${Math.round(over)} px`);
    }
  });
  const wide = document.documentElement.scrollWidth;
  if (wide > window.innerWidth + 1) problems.push(`the page scrolls sideways (${wide} px wide)`);
  const out = document.createElement("pre");
  out.id = "vitlib-check";
  out.textContent = JSON.stringify({problems, images: images.length, tables: tables.length,
                                    height: document.documentElement.scrollHeight});
  document.body.appendChild(out);
});
"""


def find_chromium():
    """The browser to use: $VITLIB_CHROMIUM, else the first of BROWSERS on PATH; None without one."""
    if os.environ.get("VITLIB_CHROMIUM"):
        return os.environ["VITLIB_CHROMIUM"]
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _chromium(browser, width, height, *args, timeout=120):
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--window-size={width},{height}", "--virtual-time-budget=10000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def _copy_with(text: str, folder: Path, head: str = "", body_end: str = "") -> str:
    """The page's HTML with `head` at the start of <head> (after a <base> that makes its relative
    links mean what they mean beside the original, in `folder`) and `body_end` before </body>."""
    base = f'<base href="{folder.as_uri()}/">{head}'
    text = text.replace("<head>", f"<head>{base}", 1) if "<head>" in text else base + text
    return text.replace("</body>", f"{body_end}</body>") if "</body>" in text else text + body_end


def check_page(html, width, browser, screenshot=None):
    """{"problems": [...], "images": n, "tables": n, "height": px, "screenshots": [paths]} of `html`
    at `width` px; with `screenshot` (a path ending .png), also PNGs of the whole page: one, or
    `<stem>-1.png`, `<stem>-2.png`, ... for a page taller than MAX_SCREENSHOT_PX."""
    html = Path(html).resolve()
    text = html.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="vitlib-browser-") as tmp:
        probe = Path(tmp, "check.html")
        probe.write_text(_copy_with(text, html.parent, body_end=f"<script>{CHECK_JS}</script>"), encoding="utf-8")
        out = _chromium(browser, width, 900, f"--user-data-dir={tmp}/profile", "--dump-dom", probe.as_uri())
        found = re.search(r'<pre id="vitlib-check">(.*?)</pre>', out.stdout, re.S)
        if not found:
            raise RuntimeError(f"{browser} did not render {html} (exit {out.returncode}): "
                               f"{out.stderr.strip().splitlines()[-1:] or 'no output'}")
        result = json.loads(found[1].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
        result["screenshots"] = []
        if screenshot is not None:
            screenshot = Path(screenshot).resolve()
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            height = int(result["height"]) + 20
            parts = -(-height // MAX_SCREENSHOT_PX)  # ceil
            for k in range(parts):  # part k: the page moved up by k windows
                shot = screenshot if parts == 1 else screenshot.with_name(f"{screenshot.stem}-{k + 1}.png")
                window = min(MAX_SCREENSHOT_PX, height - k * MAX_SCREENSHOT_PX)
                shift = f"<style>body {{ position: relative; top: -{k * MAX_SCREENSHOT_PX}px; }}</style>"
                page = Path(tmp, f"part{k}.html")
                page.write_text(_copy_with(text, html.parent, head=shift), encoding="utf-8")
                _chromium(browser, width, window, f"--user-data-dir={tmp}/profile", f"--screenshot={shot}",
                          page.as_uri())
                result["screenshots"].append(shot)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitlib.report.browser", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("html", nargs="?", default="results/report.html", help="the report (results/report.html)")
    parser.add_argument("--out", default=None, help="folder for the screenshots report-<width>px.png (none without)")
    parser.add_argument("--width", type=int, action="append", default=None,
                        help=f"window width in px (repeatable; default {', '.join(map(str, WIDTHS))})")
    args = parser.parse_args(argv)
    if not Path(args.html).is_file():
        print(f"error: no report at {args.html}; build it with `make report` (or `make demo`)", file=sys.stderr)
        return 2
    browser = find_chromium()
    if browser is None:
        print("error: no Chromium found: apt-get install chromium (or set VITLIB_CHROMIUM)", file=sys.stderr)
        return 2
    failed = False
    for width in args.width or WIDTHS:
        shot = Path(args.out, f"report-{width}px.png") if args.out else None
        result = check_page(args.html, width, browser, shot)
        status = "ok" if not result["problems"] else f"{len(result['problems'])} problem(s)"
        shots = ", ".join(str(p) for p in result["screenshots"])
        print(f"{args.html} at {width} px ({result['height']:,} px tall): {result['images']} images, "
              f"{result['tables']} tables: {status}" + (f"; screenshots {shots}" if shots else ""))
        for problem in result["problems"]:
            print(f"  {problem}")
        failed |= bool(result["problems"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
