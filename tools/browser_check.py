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
  with org/repo/branch read from ``_config.yml``.

It saves a full-page screenshot of the first chapter under ``_build/html/_screenshots/``, prints a
per-page summary table, and exits non-zero on any failure.

Usage: python tools/browser_check.py [--html _build/html] [--screenshot-page chapters/01_...]
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
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

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


@dataclass
class PageResult:
    page: str
    status: str = "?"
    math: str = ""
    images: str = ""
    console: int = 0
    colab: str = "-"
    external: int = 0
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


def start_browser(profile_dir: str, width: int = 1280, height: int = 900) -> webdriver.Chrome:
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
def check_page(driver, base: str, docname: str, facts: dict, is_chapter: bool) -> PageResult:
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
    headers = ["page", "HTTP", "math", "images", "console SEVERE", "external req", "Colab links", "result"]
    rows = [[r.page, r.status, r.math, r.images, str(r.console), str(r.external), r.colab,
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
    driver = start_browser(profile)
    results: list[PageResult] = []
    try:
        print(f"Chromium {driver.capabilities.get('browserVersion')} on {base} ({html})\n")
        for page in pages:
            try:
                results.append(check_page(driver, base, page, facts, page in chapters))
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
