"""The report pages in a real browser: headless Chromium (the system's, driven by Playwright),
for the layout tests and the README's screenshots.

    .venv/bin/python tests/report_browser.py reports/examples docs/img    # refresh the screenshots (make screenshots)

`layout(path)` opens a page at 1280 × 900 with every <details> opened and measures what could
scroll sideways (the document, every table and every box that scrolls), every number or word a
table cell broke over two lines, every figure's shown and natural width, and where the per-arm
table's first row ends (before any <details> opened). Nothing here renders a
page; it only looks at what `charrnn report` wrote.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

WIDTH, HEIGHT = 1280, 900
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
SCREENSHOTS = {"report-index.png": "index.html", "report-experiment.png": "min_rnn.html",
               "report-kernels.png": "kernels.html"}
SCREENSHOT_HEIGHT = 1800          # px of each page's top kept in the screenshot

LONG_TOKEN = 40                   # characters: a token longer than this (a path, a URL) may break to fit
MEASURE = """() => {
  const arms = document.querySelector('table.arms');
  const armsHead = arms ? arms.querySelector('tr:nth-child(2)') || arms : null;
  const armsBottom = armsHead ? armsHead.getBoundingClientRect().bottom + window.scrollY : null;
  document.querySelectorAll('details').forEach(d => d.open = true);
  const broken = [];
  document.querySelectorAll('td, th').forEach(cell => {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.data.matchAll(/\\S+/g)) {
        if (m[0].length > LONG_TOKEN) continue;
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (lines.size > 1) broken.push(m[0]);
      }
    }
  });
  const figures = [...document.querySelectorAll('img')].map(img => ({
    what: img.alt, natural: img.naturalWidth, shown: img.getBoundingClientRect().width}));
  const boxes = [...document.querySelectorAll('*')].filter(el => {
    const s = getComputedStyle(el);
    return el.tagName === 'TABLE' || ['auto', 'scroll'].includes(s.overflowX);
  });
  const describe = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
      (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ').join('.') : '');
  const first = document.querySelector('table');
  const holm = first ? [...first.querySelectorAll('th')].find(th => /verdict after Holm/i.test(th.textContent)) : null;
  return {
    document: document.documentElement.scrollWidth,
    boxes: boxes.map(el => ({what: describe(el), width: el.scrollWidth,
                             scrolls: ['auto', 'scroll'].includes(getComputedStyle(el).overflowX),
                             client: el.clientWidth})),
    holm_right: holm ? holm.getBoundingClientRect().right : null,
    broken: broken, figures: figures, arms_first_row_bottom: armsBottom,
  };
}""".replace("LONG_TOKEN", str(LONG_TOKEN))


class BrowserMissing(RuntimeError):
    """No Chromium (or no Playwright) on this machine: the message says how to get them."""


def chromium_path() -> str:
    """$CHARRNN_CHROMIUM, else the first Chromium on PATH; BrowserMissing when there is none."""
    found = os.environ.get("CHARRNN_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if not found or not os.access(found, os.X_OK):
        raise BrowserMissing("no Chromium found (tried $CHARRNN_CHROMIUM and " + ", ".join(CHROMIUM_NAMES)
                             + "); install it: apt-get install chromium (CI's .ci/run does)")
    return found


class Browser:
    """One headless Chromium for several pages (`with Browser() as b: b.layout(path)`)."""

    def __enter__(self) -> "Browser":
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            raise BrowserMissing("the playwright package is missing: pip install -e '.[dev]'") from None
        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=chromium_path(),
                                                          args=["--no-sandbox", "--disable-gpu"])
        return self

    def __exit__(self, *exc: Any) -> None:
        self._browser.close()
        self._playwright.stop()

    def _open(self, path: Path):
        page = self._browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        page.goto(Path(path).resolve().as_uri())
        return page

    def layout(self, path: Path) -> dict[str, Any]:
        """document: its scrollWidth; boxes: every table's and scrolling box's scrollWidth and
        clientWidth (with every <details> open); holm_right: the right edge of the first table's "verdict after Holm"
        header (None without one)."""
        page = self._open(path)
        try:
            return page.evaluate(MEASURE)
        finally:
            page.close()

    def text(self, path: Path, selector: str = "body") -> str:
        """The text `selector`'s first element shows on screen (innerText: hidden content left out);
        by default what a reader sees of the whole page."""
        page = self._open(path)
        try:
            return page.inner_text(selector)
        finally:
            page.close()

    def screenshot(self, path: Path, out: Path, height: int = SCREENSHOT_HEIGHT) -> Path:
        page = self._open(path)
        try:
            full = page.evaluate("() => document.documentElement.scrollHeight")
            page.screenshot(path=str(out), clip={"x": 0, "y": 0, "width": WIDTH, "height": min(height, full)})
        finally:
            page.close()
        return out


def overflows(measured: dict[str, Any], width: int = WIDTH) -> list[str]:
    """What is wider than the window (`document: 1955 px`, `table.claims: 1400 px`), and every
    box that scrolls sideways inside itself (`div.scroll: 1210 px in 1136 px`)."""
    found = [f"document: {measured['document']} px"] if measured["document"] > width else []
    found += [f"{b['what']}: {b['width']} px" for b in measured["boxes"] if b["width"] > width]
    return found + [f"{b['what']}: {b['width']} px in {b['client']} px" for b in measured["boxes"]
                    if b["scrolls"] and b["width"] > b["client"] + 1 and b["width"] <= width]


def broken_tokens(measured: dict[str, Any]) -> list[str]:
    """Numbers and words (at most LONG_TOKEN characters) that a table cell broke over two lines."""
    return measured["broken"]


def shrunk_figures(measured: dict[str, Any], least: float = 0.8) -> list[str]:
    """Figures shown below `least` of their natural width (`curves: 63 %`)."""
    return [f"{f['what']}: {100 * f['shown'] / f['natural']:.0f} %" for f in measured["figures"]
            if f["natural"] and f["shown"] < least * f["natural"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshots of rendered report pages at 1280 px.")
    parser.add_argument("reports", type=Path, help="a directory `charrnn report` wrote")
    parser.add_argument("out", type=Path, help="where the PNGs go (e.g. docs/img)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with Browser() as browser:
            for name, page in SCREENSHOTS.items():
                if (args.reports / page).is_file():
                    print(browser.screenshot(args.reports / page, args.out / name))
    except BrowserMissing as err:
        print(f"screenshots: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
