"""The book: it builds with -n -W --keep-going, and a headless Chromium reads it offline.

The build runs in quick mode into _build/quick (its own jupyter-cache, so quick outputs never
mix with the full-mode book of `make book`).
"""
import os
import re
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import ROOT, SCREENSHOTS

OUT = ROOT / "_build" / "quick"
HTML = OUT / "_build" / "html"


@pytest.fixture(scope="module")
def build():
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(OUT),
                           "--builder", "html", "-n", "-W", "--keep-going"],
                          capture_output=True, text=True,
                          env={**os.environ, "LSTMBOOK_QUICK": "1"})
    return proc


def test_book_builds_without_warnings(build):
    log = build.stdout + build.stderr
    # Sphinx's own warnings ("file:line: WARNING: ..."), not the kernels' start-up chatter.
    warnings = [l for l in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL):", l)]
    assert build.returncode == 0 and not warnings, "\n".join(warnings) or log[-3000:]
    assert (HTML / "book" / "01_rnn_theory.html").is_file()


def test_mathjax_is_served_locally(build):
    page = (HTML / "book" / "01_rnn_theory.html").read_text()
    # (Sphinx appends ?v=<checksum> when the file was already in _static: on a rebuild)
    assert re.search(r'src="\.\./_static/mathjax/tex-chtml\.js(\?v=[0-9a-f]+)?"', page)
    assert (HTML / "_static" / "mathjax" / "tex-chtml.js").is_file()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(build):
    assert build.returncode == 0, "the book did not build"
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(HTML)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def open_page(browser, url):
    page = browser.new_page()
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url, wait_until="networkidle")
    return page, requests


def test_theory_page_reads_offline(site, browser):
    page, requests = open_page(browser, f"{site}/book/01_rnn_theory.html")
    # Math is typeset by the local MathJax.
    page.wait_for_selector("mjx-container", timeout=30_000)
    assert page.locator("mjx-container").count() >= 10
    # Every figure made by code loaded.
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth > 0])")
    figures = [src for src, ok in images if "_images" in (src or "")]
    assert len(figures) >= 3 and all(ok for _, ok in images), images
    # A collapsed solution opens on click.
    solution = page.locator("details.hide.above-input").first
    assert solution.get_attribute("open") is None
    solution.locator("summary").click()
    page.wait_for_function("d => d.open", arg=solution.element_handle())
    assert solution.locator("pre").first.is_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "01_rnn_theory.png"), full_page=False)
    # No request left this machine.
    outside = [u for u in requests if urlparse(u).scheme in ("http", "https")
               and urlparse(u).hostname != "127.0.0.1"]
    assert not outside, outside


def test_every_page_loads_without_outside_requests(site, browser):
    for html in sorted((HTML / "book").glob("*.html")):
        page, requests = open_page(browser, f"{site}/book/{html.name}")
        outside = [u for u in requests if urlparse(u).scheme in ("http", "https")
                   and urlparse(u).hostname != "127.0.0.1"]
        assert not outside, (html.name, outside)
        page.close()


def test_comparison_page_shows_the_saved_table(site, browser):
    """Lesson 6 renders results/bench.json: a Markdown table with a row per contender, the
    loss-against-time figure, and where the numbers came from."""
    from lstmbook import compare
    page, _ = open_page(browser, f"{site}/book/06_comparison.html")
    text = page.inner_text("main")
    assert "saved by make bench in results/bench.json" in text
    table = page.locator("table", has_text="fwd+bwd tokens/s")
    assert table.count() == 1
    rows = table.locator("tbody tr").all_inner_texts()
    saved = compare.load_or_measure()[0]
    assert [r.split("\t")[0].strip() for r in rows] == [
        f"{c.name} ({c.lesson})" for c in compare.CONTENDERS.values()] + [
        f"{b['name']} ({b['lesson']})" for b in saved.get("baselines", [])]
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth > 0])")
    assert any("_images" in (src or "") and ok for src, ok in images), images
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    table.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "06_comparison.png"), full_page=False)
    page.close()


def figures_without_words(html: str) -> list[str]:
    """The code-made images of a page whose alt text says nothing: missing, empty, or a file
    name (what myst-nb writes when a cell gives no ``mystnb: image: alt:``); and those that are
    not in a numbered, captioned figure."""
    problems = []
    for tag in re.findall(r"<img\b[^>]*>", html):
        src = re.search(r'src="([^"]*)"', tag)
        if not src or "_images/" not in src.group(1):
            continue
        alt = re.search(r'alt="([^"]*)"', tag)
        words = alt.group(1).strip() if alt else ""
        if not words or re.fullmatch(r"[\w./-]+\.(png|svg|jpe?g)", words) or words in src.group(1):
            problems.append(f"{src.group(1)}: alt text {words!r}")
    captions = len(re.findall(r'<figure class="align-default" id=', html))
    images = len([t for t in re.findall(r"<img\b[^>]*>", html) if "_images/" in t])
    if captions < images:
        problems.append(f"{images - captions} of {images} figures have no caption and name")
    return problems


def test_every_figure_has_a_caption_and_alt_text(build):
    """A figure can be cited (numbered, with a name) and heard (alt text that says what it
    shows): each code-made image sits in a captioned figure and its alt text is words."""
    assert build.returncode == 0, "the book did not build"
    problems = {page.name: figures_without_words(page.read_text())
                for page in sorted((HTML / "book").glob("*.html"))}
    problems = {name: found for name, found in problems.items() if found}
    assert not problems, problems


def test_the_alt_text_check_catches_a_file_name():
    assert figures_without_words('<img alt="a1b2.png" src="../_images/a1b2.png" />')
    assert figures_without_words('<img src="../_images/a1b2.png" />')
    good = ('<figure class="align-default" id="fig-x"><img alt="Validation loss falls" '
            'src="../_images/a1b2.png" /></figure>')
    assert not figures_without_words(good)
