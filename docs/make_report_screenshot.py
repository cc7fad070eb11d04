"""Regenerate docs/report.png: the HTML report of a `sweep --json` result, photographed in headless Chromium.

    python docs/make_report_screenshot.py RESULT.json [docs/report.png]

Needs Debian's chromium (apt-get install chromium) and the playwright Python package (test extra); playwright's
own browser download is not used.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from engine.reports.html import write_html


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    result = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("report.png")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("make_report_screenshot: no chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        page_path = Path(tmp) / "report.html"
        write_html(result, page_path)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 1400}, device_scale_factor=1)
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            page.screenshot(path=str(out), full_page=False)
            browser.close()
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
