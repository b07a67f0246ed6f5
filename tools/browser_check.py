#!/usr/bin/env python
"""Open every page of the built book in a real headless Chromium and check it.

The built site (``_build/html``) is served on localhost from a thread; Debian's ``chromium`` is
driven through ``/usr/bin/chromedriver`` with Selenium. For every page in ``_toc.yml`` (intro,
chapters, bibliography) it checks that

- the page loads (HTTP 200, a non-empty article);
- MathJax started and typeset the math: every Sphinx math element holds an ``mjx-container`` and
  no raw ``$$``, ``\\(``, ``\\[`` or ``\\begin{`` is left in the visible prose;
- every ``<img>`` has loaded (``complete`` and ``naturalWidth > 0``);
- the browser console has no SEVERE entry;
- no request left localhost (the book must work offline: MathJax, fonts and images are local);
- on chapter pages, the "Open in Colab" badge and the Colab launch button both point at
  ``https://colab.research.google.com/github/<org>/<repo>/blob/<branch>/chapters/<notebook>.ipynb``,
  with org/repo/branch read from ``_config.yml``;
- no raw progress-bar text is shown (tqdm fragments such as ``0%|``, ``| 0/6 [00:00<?, ?it/s]``,
  ``TqdmWarning: IProgress not found``): chapters print one summary line per loop through
  ``nodelib.progress`` instead (``RAW_PROGRESS`` below; ``tests/test_book.py`` runs the same pattern
  over the notebooks' committed outputs);
- no display equation is wider than the column (cut off by the theme's ``overflow: hidden`` or
  scrolled inside its MathJax container).

It also counts the code blocks that scroll sideways (``scrollWidth > clientWidth``): code cells and
code in the prose ("code" column, a failure when more than ``--max-wide-code`` per page, default
0: chapter code lines are at most 79 characters, see tests/test_book.py, and the column holds
more) and cell outputs ("output" column, reported only). Collapsed content (hidden cells,
solution dropdowns) is expanded for these measurements and collapsed again afterwards.

The browser window is 1400 x 900 px unless ``--width``/``--height`` say otherwise. It saves a
full-page screenshot of the first chapter under ``_build/html/_screenshots/``, prints a per-page
summary table, and exits non-zero on any failure.

Usage: python tools/browser_check.py [--html _build/html] [--screenshot-page chapters/01_...]
                                     [--width 1400] [--max-wide-code 0] [--details]
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import posixpath
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

# Selenium is imported where the browser starts, so that tests/test_book.py can import the patterns
# below without it.

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAGE_TIMEOUT_S = 60

# Runs in the page: wait for MathJax's startup promise (if MathJax is on the page at all).
WAIT_FOR_MATHJAX_JS = """
const done = arguments[arguments.length - 1];
const deadline = Date.now() + 30000;
function poll() {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    mj.startup.promise.then(() => done({state: 'typeset', version: mj.version || null}))
                      .catch(e => done({state: 'error: ' + e}));
  } else if (!document.querySelector('script[src*="mathjax"]')) {
    done({state: 'absent'});
  } else if (Date.now() > deadline) {
    done({state: 'timeout'});
  } else {
    setTimeout(poll, 100);
  }
}
poll();
"""

# Runs in the page: collect what the checks need.
INSPECT_JS = """
const article = document.querySelector('article') || document.querySelector('main') || document.body;
const mathNodes = Array.from(document.querySelectorAll('.math, span.math, div.math'));
const untypeset = mathNodes.filter(n => !n.querySelector('mjx-container')).map(n => n.textContent.slice(0, 60));
// visible prose: drop code, outputs and MathJax's own (assistive) markup
const clone = article.cloneNode(true);
clone.querySelectorAll('pre, code, script, style, mjx-container, .highlight, .output, .cell_output')
     .forEach(n => n.remove());
const holder = document.createElement('div');
holder.style.position = 'absolute'; holder.style.left = '-99999px';
holder.appendChild(clone); document.body.appendChild(holder);
const prose = clone.innerText; holder.remove();
const imgs = Array.from(document.images).map(img => ({
  src: img.currentSrc || img.src, complete: img.complete, w: img.naturalWidth,
}));
const badge = Array.from(document.querySelectorAll('a')).find(a => a.querySelector('img[alt="Open in Colab"]'));
const launch = Array.from(document.querySelectorAll('a')).filter(a =>
  (a.getAttribute('title') || a.getAttribute('data-bs-original-title') || a.textContent || '')
    .match(/Colab/i) && !a.querySelector('img[alt="Open in Colab"]'));
return {
  title: document.title,
  articleChars: article.innerText.trim().length,
  mjx: document.querySelectorAll('mjx-container').length,
  mathNodes: mathNodes.length,
  untypeset: untypeset,
  mathjaxScript: !!document.querySelector('script[src*="mathjax"]'),
  prose: prose,
  imgs: imgs,
  badgeHref: badge ? badge.href : null,
  badgeRawHref: badge ? badge.getAttribute('href') : null,
  launchHrefs: launch.map(a => a.href),
};
"""

RAW_MATH = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{")

# Raw tqdm output: what a progress bar leaves in a notebook executed headless. Each alternative is
# a piece of tqdm's own format "{desc}: {pct}%|{bar}| {n}/{total} [{elapsed}<{remaining}, {rate}]"
# or one of its warnings, so prose such as "50% of the steps" or "a 3/6 split" does not match.
RAW_PROGRESS = re.compile(r"""
    \d{1,3}%\|                                            # "  0%|", "100%|" (left of the bar)
  | \|\s*\d+(?:\.\d+)?[kMGTP]?/(?:\d+(?:\.\d+)?[kMGTP]?|\?)\s\[  # "| 0/6 [" (right of the bar)
  | \[\d+:\d\d(?::\d\d)?<(?:\d+:\d\d(?::\d\d)?|\?)            # "[00:00<?", "[00:01<00:03"
  | (?:\?|\d(?:\.\d+)?[kMGTP]?)(?:it|s)/(?:s|it)(?=[,\]])     # "?it/s]", "30.05it/s,", "1.2s/it]"
  | IProgress\ not\ found | \bTqdm[A-Za-z]*Warning\b          # tqdm.auto without ipywidgets
""", re.VERBOSE)


def raw_progress_lines(text: str) -> list[str]:
    """The lines (split at newlines and carriage returns) of ``text`` that show raw tqdm output."""
    return [line.strip() for line in re.split(r"[\r\n]+", text) if RAW_PROGRESS.search(line)]


# Runs in the page after INSPECT_JS: what is wider than the column. Collapsed content (hidden setup
# cells, solution dropdowns) is opened for the measurement and closed again afterwards.
LAYOUT_JS = """
const article = document.querySelector('article') || document.querySelector('main') || document.body;
const closed = Array.from(article.querySelectorAll('details:not([open])'));
closed.forEach(d => { d.open = true; });
const toggled = Array.from(article.querySelectorAll('.toggle-hidden'));
toggled.forEach(n => n.classList.remove('toggle-hidden'));
const SLACK = 1;  // px of sub-pixel rounding
const shown = n => n.getClientRects().length > 0;
function where(node) {  // the enclosing admonition's title (solutions, proofs), else the section
  const clean = t => t.replace(/[#\\u00b6]/g, '').replace(/\\s+/g, ' ').trim().slice(0, 50);
  const box = node.closest('.admonition, .proof, .exercise, .solution');
  const title = box && box.querySelector('.admonition-title, .proof-title, p.admonition-title');
  if (title && clean(title.textContent)) return clean(title.textContent);
  const section = node.closest('section');
  const heading = section && section.querySelector('h1, h2, h3, h4, h5');
  return heading ? clean(heading.textContent) : '';
}
function texOf(node) {
  try {
    const items = MathJax.startup.document.getMathItemsWithin(node);
    if (items.length) return String(items[0].math).replace(/\\s+/g, ' ').trim().slice(0, 70);
  } catch (e) { /* fall back to the text */ }
  return node.textContent.replace(/\\s+/g, ' ').trim().slice(0, 70);
}
const math = [];
article.querySelectorAll('mjx-container[display="true"]').forEach(c => {
  if (!shown(c)) return;
  const content = c.querySelector(':scope > mjx-math') || c;
  const box = c.closest('div.math') || c.parentElement;
  const need = content.getBoundingClientRect().width;
  const have = Math.min(c.clientWidth, box.clientWidth);
  const wide = need > have + SLACK || c.scrollWidth > c.clientWidth + SLACK
               || box.scrollWidth > box.clientWidth + SLACK;
  math.push({wide: wide, where: where(c), tex: wide ? texOf(c) : '',
             need: Math.round(need), have: Math.round(have)});
});
const code = [], output = [];
article.querySelectorAll('pre').forEach(pre => {
  if (!shown(pre)) return;
  const lines = pre.textContent.split('\\n');
  const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
  const rec = {wide: pre.scrollWidth > pre.clientWidth + SLACK, where: where(pre),
               chars: longest.length, line: longest.trim().slice(0, 60),
               over: pre.scrollWidth - pre.clientWidth, width: pre.clientWidth};
  (pre.closest('.cell_output') ? output : code).push(rec);
});
const outputsText = Array.from(article.querySelectorAll('.cell_output'))
  .map(n => n.textContent).join('\\n');
const column = (document.querySelector('.bd-article') || article).getBoundingClientRect().width;
closed.forEach(d => { d.open = false; });
toggled.forEach(n => n.classList.add('toggle-hidden'));
return {math: math, code: code, output: output, outputsText: outputsText, column: Math.round(column)};
"""


@dataclass
class PageResult:
    page: str
    status: str = "?"
    math: str = ""
    images: str = ""
    console: int = 0
    colab: str = "-"
    external: int = 0
    progress: int = 0
    wide_math: str = "-"
    wide_code: str = "-"
    wide_output: str = "-"
    details: list[str] = field(default_factory=list)  # reported, not failures
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


# --------------------------------------------------------------------------- book facts
def book_facts(root: Path) -> dict:
    cfg = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    url = cfg["repository"]["url"].rstrip("/")
    url = url[:-4] if url.endswith(".git") else url
    m = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+)", url)
    if not m:
        raise SystemExit(f"_config.yml: repository.url is not a GitHub URL: {url!r}")
    book = str(cfg["repository"].get("path_to_book", "") or "").strip("/")
    return {
        "org": m.group(1), "repo": m.group(2), "branch": str(cfg["repository"]["branch"]),
        "colab": cfg["launch_buttons"]["colab_url"].rstrip("/"),
        "path_to_book": "" if book in ("", ".") else book,
    }


def toc_pages(root: Path) -> list[str]:
    """Docnames in _toc.yml order (root first), without suffix."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    pages = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                pages.append(node["file"])
            for key, value in node.items():
                if key != "file":
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [posixpath.splitext(p)[0] if p.endswith((".md", ".ipynb")) else p for p in pages]


def expected_colab(facts: dict, docname: str) -> str:
    path = posixpath.normpath(posixpath.join(facts["path_to_book"] or ".", docname + ".ipynb"))
    return f"{facts['colab']}/github/{facts['org']}/{facts['repo']}/blob/{facts['branch']}/{path}"


# --------------------------------------------------------------------------- server + browser
class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the summary readable
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # the browser may drop a connection it no longer needs (navigation, preloads)
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def serve(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def start_browser(profile_dir: str, width: int = 1400, height: int = 900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", "--disable-extensions",
                f"--window-size={width},{height}", f"--user-data-dir={profile_dir}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(PAGE_TIMEOUT_S)
    driver.set_script_timeout(PAGE_TIMEOUT_S)
    return driver


def requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def full_page_screenshot(driver, path: Path, tile_height: int = 12000) -> list[Path]:
    """Capture the whole page (beyond the viewport). Chromium cannot capture more than ~16k px at
    once, so a taller page is saved as consecutive tiles ``<name>.part1.png``, ``.part2.png``..."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    width, height = int(size["width"]), int(size["height"])
    tops = list(range(0, height, tile_height))
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for i, top in enumerate(tops, start=1):
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True, "fromSurface": True,
            "clip": {"x": 0, "y": top, "width": width, "height": min(tile_height, height - top),
                     "scale": 1},
        })
        out = path if len(tops) == 1 else path.with_suffix(f".part{i}.png")
        out.write_bytes(base64.b64decode(shot["data"]))
        written.append(out)
    print(f"screenshot {width}x{height} px: " + ", ".join(str(p) for p in written))
    return written


# --------------------------------------------------------------------------- the checks
def check_page(driver, base: str, docname: str, facts: dict, is_chapter: bool,
               max_wide_code: int = 0) -> PageResult:
    from selenium.webdriver.support.ui import WebDriverWait

    result = PageResult(docname)
    url = f"{base}/{docname}.html"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            status = response.status
    except Exception as exc:  # noqa: BLE001 - report any failure to fetch
        result.status = "missing"
        result.failures.append(f"cannot fetch {url}: {exc}")
        return result

    driver.get_log("browser"), driver.get_log("performance")  # drain logs of earlier pages
    driver.get(url)
    WebDriverWait(driver, PAGE_TIMEOUT_S).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    mathjax = driver.execute_async_script(WAIT_FOR_MATHJAX_JS)
    # load lazy images: scroll through the page, then wait until every image is settled
    driver.execute_script("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager');"
                          "window.scrollTo(0, document.body.scrollHeight); window.scrollTo(0, 0);")
    try:
        WebDriverWait(driver, 20).until(
            lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)"))
    except Exception:  # noqa: BLE001 - reported below as unloaded images
        pass
    info = driver.execute_script(INSPECT_JS)
    layout = driver.execute_script(LAYOUT_JS)
    time.sleep(0.2)  # let late console messages arrive

    # loads
    result.status = f"{status}"
    if status != 200:
        result.failures.append(f"HTTP {status}")
    if info["articleChars"] < 50:
        result.failures.append("page has (almost) no content")
    if "404" in info["title"] or "Page not found" in info["title"]:
        result.failures.append(f"title says not found: {info['title']!r}")

    # math
    raw = sorted(set(RAW_MATH.findall(info["prose"])))
    result.math = f"{info['mjx']} typeset" if info["mathjaxScript"] else "no MathJax"
    if info["mathjaxScript"] and mathjax["state"] != "typeset":
        result.failures.append(f"MathJax did not start: {mathjax['state']}")
    if info["mathNodes"] and not info["mathjaxScript"]:
        result.failures.append(f"{info['mathNodes']} math elements but no MathJax on the page")
    if info["untypeset"]:
        result.failures.append(f"{len(info['untypeset'])} math elements not typeset, e.g. {info['untypeset'][:2]}")
    if raw:
        result.failures.append(f"raw TeX left in visible text: {raw}")

    # images
    bad_imgs = [i["src"] for i in info["imgs"] if not (i["complete"] and i["w"] > 0)]
    result.images = f"{len(info['imgs']) - len(bad_imgs)}/{len(info['imgs'])}"
    for src in bad_imgs:
        result.failures.append(f"image not loaded: {src}")

    # console
    severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    result.console = len(severe)
    for entry in severe:
        result.failures.append(f"console SEVERE: {entry.get('message', '')[:200]}")

    # offline
    external = sorted({u for u in requested_urls(driver)
                       if not u.startswith((base, "data:", "blob:", "about:", "chrome"))})
    result.external = len(external)
    for u in external:
        result.failures.append(f"request left localhost: {u}")

    # progress bars: raw tqdm text in the prose or in any cell output
    progress = raw_progress_lines(info["prose"]) + raw_progress_lines(layout["outputsText"])
    result.progress = len(progress)
    if progress:
        examples = "; ".join(repr(line[:60]) for line in progress[:3])
        result.failures.append(f"{len(progress)} line(s) of raw progress-bar text, e.g. {examples}")

    # width: display math must fit the column; code blocks that scroll sideways are counted
    wide_math = [m for m in layout["math"] if m["wide"]]
    result.wide_math = f"{len(wide_math)}/{len(layout['math'])}"
    for m in wide_math:
        result.failures.append(f"display math wider than the column ({m['need']} > {m['have']} px) "
                               f"in '{m['where']}': {m['tex']}")
    for kind, blocks in (("code", layout["code"]), ("output", layout["output"])):
        wide = [b for b in blocks if b["wide"]]
        setattr(result, f"wide_{kind}", f"{len(wide)}/{len(blocks)}")
        for b in wide:
            result.details.append(f"{kind} block scrolls by {b['over']} px ({b['chars']} chars "
                                  f"in {b['width']} px) in '{b['where']}': {b['line']}")
        if kind == "code" and len(wide) > max_wide_code:
            result.failures.append(f"{len(wide)} code block(s) scroll sideways "
                                   f"(at most {max_wide_code} allowed; see the details below)")

    # colab links
    if is_chapter:
        want = expected_colab(facts, docname)
        problems = []
        if info["badgeHref"] != want:
            problems.append(f"badge -> {info['badgeHref']}")
        colab_launch = [h for h in info["launchHrefs"] if h.startswith(facts["colab"])]
        if not colab_launch:
            problems.append("no Colab launch button")
        problems += [f"launch button -> {h}" for h in colab_launch if h != want]
        result.colab = "ok" if not problems else "WRONG"
        for p in problems:
            result.failures.append(f"Colab link: {p} (want {want})")
    return result


def print_table(results: list[PageResult]) -> None:
    headers = ["page", "HTTP", "math", "images", "console SEVERE", "external req", "Colab links",
               "raw progress", "wide math", "wide code", "wide output", "result"]
    rows = [[r.page, r.status, r.math, r.images, str(r.console), str(r.external), r.colab,
             str(r.progress), r.wide_math, r.wide_code, r.wide_output,
             "PASS" if r.ok else "FAIL"] for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--screenshot-page", default=None,
                        help="docname to screenshot (default: the first chapter in _toc.yml)")
    parser.add_argument("--width", type=int, default=1400, help="browser window width in px")
    parser.add_argument("--height", type=int, default=900, help="browser window height in px")
    parser.add_argument("--max-wide-code", type=int, default=0,
                        help="code blocks per page allowed to scroll sideways (default 0)")
    parser.add_argument("--details", action="store_true",
                        help="list every code and output block that scrolls sideways")
    args = parser.parse_args(argv)

    html = args.html.resolve()
    if not (html / "index.html").exists():
        print(f"No built book at {html}; run `make book` first.", file=sys.stderr)
        return 2
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not Path(exe).exists():
            print(f"{exe} not found: apt-get install chromium chromium-driver", file=sys.stderr)
            return 2

    facts = book_facts(ROOT)
    pages = toc_pages(ROOT)
    chapters = [p for p in pages if (ROOT / f"{p}.ipynb").exists()]
    shot_page = args.screenshot_page or (chapters[0] if chapters else pages[0])

    server, base = serve(html)
    profile = tempfile.mkdtemp(prefix="browser-check-profile-")
    driver = start_browser(profile, args.width, args.height)
    results: list[PageResult] = []
    try:
        print(f"Chromium {driver.capabilities.get('browserVersion')} on {base} ({html}), "
              f"window {args.width}x{args.height} px\n")
        for page in pages:
            try:
                results.append(check_page(driver, base, page, facts, page in chapters,
                                          args.max_wide_code))
            except Exception as exc:  # noqa: BLE001 - one broken page must not hide the others
                r = PageResult(page, status="error")
                r.failures.append(f"{type(exc).__name__}: {exc}".splitlines()[0])
                results.append(r)
            if page == shot_page:
                print(f"screenshot of {page}:")
                full_page_screenshot(driver, html / "_screenshots" / f"{page.replace('/', '__')}.png")
    finally:
        driver.quit()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)

    print()
    print_table(results)
    if args.details:
        for r in results:
            for d in r.details:
                print(f"  {r.page}: {d}")
    failures = [(r.page, f) for r in results for f in r.failures]
    if failures:
        print(f"\n{len(failures)} problem(s):")
        for page, f in failures:
            print(f"  {page}: {f}")
        return 1
    print(f"\nAll {len(results)} pages passed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
