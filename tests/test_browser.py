"""The built book in a real browser: Debian's Chromium (``/usr/bin/chromium``, installed by
``.ci/run``) driven by playwright, at phone (400 px) and desktop (1400 px) width.

The book is built once (``jupyter-book build book -W -n --keep-going``, as ``make html`` does) into a
temporary folder; every page is then opened offline (every http(s) request is refused, so MathJax
from its CDN never loads and formulas stay raw LaTeX, which the checks allow). Checked:

* every page loads without a script error, and every image on it loads;
* the chapter-list (primary) and page-contents (secondary) buttons open their panels;
* nothing is wider than the text column (a wide block may scroll inside its own box) and the page
  never scrolls sideways;
* every internal link points to an existing file and, with a ``#fragment``, an existing anchor;
* no nbval marker and no traceback appear in a page's text;
* the run times of the introduction's table are those of the chapter footers;
* every figure of a chapter has a caption and an alt text that is not a file name.

``CMMD_SCREENSHOTS=/some/folder`` saves a screenshot of every page at both widths there.
"""

from __future__ import annotations

import html.parser
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
WIDTHS = (400, 1400)
HEIGHT = 900
# Flags for a headless Chromium on a machine whose network is closed: no sandbox (root in CI
# containers), no GPU, and none of the background connections that would stall on the closed network.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Jupyter Book 1 writes sphinx-thebe's configuration script twice; the second copy throws this
# error. Thebe is switched off (_config.yml), so nothing depends on that script.
KNOWN_PAGE_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)
# Pages whose buttons are clicked (every page shares the theme's template).
TOGGLE_PAGES = ("intro.html", "generated/01_sliced_mmd.html")

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; .ci/run does)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is missing: pip install -e '.[test]' (no browser download needed)"
)

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- build and browse


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The book built as CI builds it, into a temporary folder: its ``_build/html``."""
    out = tmp_path_factory.mktemp("book")
    exe = Path(sys.executable).with_name("jupyter-book")
    command = [str(exe) if exe.exists() else shutil.which("jupyter-book") or "jupyter-book"]
    result = subprocess.run(
        [*command, "build", str(ROOT / "book"), "--path-output", str(out), "-W", "-n", "--keep-going"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out / "_build" / "html"


_REDIRECT = re.compile(r'<meta http-equiv="Refresh" content="0; url=([^"]+)"', re.I)


def _pages(html: Path, *, redirects: bool = False) -> list[str]:
    """The HTML pages of the book (relative paths); with ``redirects``, only the redirect stubs
    (``index.html`` sends the reader to the introduction)."""
    skip = {"_static", "_sources", "_images"}
    pages = []
    for path in sorted(html.rglob("*.html")):
        if skip & set(path.relative_to(html).parts):
            continue
        if bool(_REDIRECT.search(path.read_text(encoding="utf-8", errors="replace")[:500])) == redirects:
            pages.append(path.relative_to(html).as_posix())
    return pages


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _open(browser, url: str, width: int, errors: list[str] | None = None):
    """A new page of ``width`` px, offline, showing ``url`` once its images have loaded."""
    page = browser.new_page(viewport={"width": width, "height": HEIGHT})
    page.route(re.compile(r"^(https?|wss?)://"), lambda route: route.abort())
    if errors is not None:
        page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(url, wait_until="load")
    page.evaluate(
        """() => Promise.all([...document.images].map(img => {
               img.loading = 'eager';
               return img.complete ? null : new Promise(done => { img.onload = img.onerror = done; });
           }))"""
    )
    return page


# Everything measured on one page, in the browser.
SURVEY = r"""() => {
  const article = document.querySelector('article.bd-article');
  const out = {hasArticle: !!article, title: document.title, pageWidth: document.documentElement.scrollWidth,
               viewport: window.innerWidth, images: [], wide: [], links: [], ids: [], figures: []};
  for (const img of document.images) {
    if (!(img.naturalWidth > 0)) out.images.push(img.getAttribute('src'));
  }
  for (const a of document.querySelectorAll('a[href]')) out.links.push(a.href);
  for (const e of document.querySelectorAll('[id]')) out.ids.push(e.id);
  for (const e of document.querySelectorAll('a[name]')) out.ids.push(e.getAttribute('name'));
  if (!article) return out;
  const style = getComputedStyle(article), box = article.getBoundingClientRect();
  const left = box.left + parseFloat(style.paddingLeft), right = box.right - parseFloat(style.paddingRight);
  out.column = [Math.round(left), Math.round(right)];
  // An element is too wide when it reaches outside the text column and no ancestor inside the
  // column clips it (scrolls or hides its overflow). Only the outermost such element is reported.
  const clipped = e => {
    for (let a = e.parentElement; a && a !== article; a = a.parentElement) {
      const ox = getComputedStyle(a).overflowX;
      if (ox !== 'visible') {
        const r = a.getBoundingClientRect();
        if (r.left >= left - 1 && r.right <= right + 1) return true;
      }
    }
    return false;
  };
  const reported = new Set();
  for (const e of article.querySelectorAll('*')) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.right <= right + 1 && r.left >= left - 1) continue;
    let parent = e.parentElement, inside = false;
    for (; parent && parent !== article; parent = parent.parentElement) if (reported.has(parent)) { inside = true; break; }
    if (inside || clipped(e)) continue;
    reported.add(e);
    const cell = e.closest('div.cell');
    const code = cell && cell.querySelector('.cell_input pre');
    out.wide.push({what: e.tagName.toLowerCase() + (e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\s+/).join('.') : ''),
                   width: Math.round(r.width), column: Math.round(right - left),
                   text: (e.innerText || e.getAttribute('alt') || '').trim().split('\n')[0].slice(0, 80),
                   cell: code ? code.textContent.split('\n')[0].slice(0, 80) : null});
  }
  for (const img of article.querySelectorAll('div.cell_output img')) {
    const fig = img.closest('figure');
    const caption = fig && fig.querySelector('figcaption');
    const cell = img.closest('div.cell'), code = cell && cell.querySelector('.cell_input pre');
    out.figures.push({alt: img.getAttribute('alt') || '', caption: caption ? caption.textContent.trim() : '',
                      cell: code ? code.textContent.split('\n')[0].slice(0, 80) : null});
  }
  out.text = article.textContent;
  out.cellText = [...article.querySelectorAll('div.cell')].map(c => c.textContent).join('\n');
  return out;
}"""


@pytest.fixture(scope="module")
def survey(site, browser) -> dict:
    """Every page at both widths: ``{(page, width): measurements}``, plus the page errors."""
    screenshots = os.environ.get("CMMD_SCREENSHOTS")
    results, errors = {}, defaultdict(list)
    for width in WIDTHS:
        for name in _pages(site):
            page = _open(browser, (site / name).as_uri(), width, errors[(name, width)])
            results[(name, width)] = page.evaluate(SURVEY)
            if screenshots:
                Path(screenshots).mkdir(parents=True, exist_ok=True)
                shot = name.replace("/", "_").removesuffix(".html")
                page.screenshot(path=str(Path(screenshots) / f"{shot}_{width}.png"))
            page.close()
    return {"pages": results, "errors": errors}


def _report(problems: list[str], what: str) -> str:
    return f"{len(problems)} {what}:\n" + "\n".join(problems[:80])


# --------------------------------------------------------------------------- the checks


def test_every_page_loads_without_script_errors(site, survey):
    problems = []
    for (name, width), data in survey["pages"].items():
        if not data["title"]:
            problems.append(f"{name} at {width} px: no title")
        if name not in ("genindex.html", "search.html", "prf-prf.html") and not data["hasArticle"]:
            problems.append(f"{name} at {width} px: no article")
        for err in survey["errors"][(name, width)]:
            if not any(known in err for known in KNOWN_PAGE_ERRORS):
                problems.append(f"{name} at {width} px: script error {err}")
    assert len({name for name, _ in survey["pages"]}) >= 10, "the book has fewer pages than expected"
    assert not problems, _report(problems, "pages with problems")


def test_every_image_loads(survey):
    problems = [
        f"{name} at {width} px: {src}"
        for (name, width), data in survey["pages"].items()
        for src in data["images"]
    ]
    assert not problems, _report(problems, "images that do not load")


def test_nothing_is_wider_than_the_text_column(survey):
    problems = []
    for (name, width), data in survey["pages"].items():
        if data["pageWidth"] > data["viewport"] + 1:
            problems.append(f"{name} at {width} px: the page scrolls sideways ({data['pageWidth']} px wide)")
        for item in data["wide"]:
            where = f" in the cell starting {item['cell']!r}" if item["cell"] else ""
            problems.append(
                f"{name} at {width} px: {item['what']} is {item['width']} px wide, the column "
                f"{item['column']} px{where}: {item['text']!r}"
            )
    assert not problems, _report(problems, "blocks wider than the text column")


class _Anchors(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key == "id" or (tag == "a" and key == "name"):
                self.ids.add(value)


def test_internal_links_resolve(site, survey):
    anchors: dict[Path, set[str]] = {}

    def ids_of(path: Path) -> set[str]:
        if path not in anchors:
            parser = _Anchors()
            parser.feed(path.read_text(encoding="utf-8", errors="replace"))
            anchors[path] = parser.ids
        return anchors[path]

    problems = set()
    for name in _pages(site, redirects=True):
        target = _REDIRECT.search((site / name).read_text(encoding="utf-8")).group(1)
        if not (site / name).parent.joinpath(target).exists():
            problems.add(f"{name}: redirects to a missing file {target}")
    for (name, width), data in survey["pages"].items():
        if width != WIDTHS[-1]:
            continue  # the same links at every width
        for href in data["links"]:
            parts = urlsplit(href)
            if parts.scheme != "file":
                continue
            target = Path(unquote(parts.path))
            if not target.exists():
                problems.add(f"{name}: link to a missing file {target.relative_to(site) if site in target.parents else target}")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in ids_of(target):
                problems.add(f"{name}: link to a missing anchor {target.name}#{parts.fragment}")
    assert not problems, _report(sorted(problems), "broken internal links")


def test_no_nbval_marker_or_traceback_is_shown(survey):
    problems = []
    for (name, width), data in survey["pages"].items():
        if width != WIDTHS[-1] or not data["hasArticle"]:
            continue
        # nbval markers in code cells and outputs (the prose may name them); tracebacks anywhere
        for needle, text in (("NBVAL_", data["cellText"]), ("Traceback", data["text"])):
            for match in re.finditer(re.escape(needle), text):
                context = text[max(0, match.start() - 40): match.end() + 40].replace("\n", " ")
                problems.append(f"{name}: {needle!r} in ...{context}...")
    assert not problems, _report(problems, "markers or tracebacks in the text")


PANEL = r"""(which) => {
  // Whether the sidebar `which` ('primary' or 'secondary') is on screen with at least one link.
  const shown = e => {
    if (!e) return false;
    const r = e.getBoundingClientRect(), s = getComputedStyle(e);
    return r.width > 0 && r.height > 0 && r.right > 0 && r.left < window.innerWidth
      && s.visibility !== 'hidden' && s.display !== 'none';
  };
  for (const panel of [document.getElementById(`pst-${which}-sidebar-modal`),
                       document.getElementById(`pst-${which}-sidebar`)]) {
    if (!shown(panel)) continue;
    if ([...panel.querySelectorAll('a[href]')].some(shown)) return true;
  }
  return false;
}"""


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("which", ["primary", "secondary"])
@pytest.mark.parametrize("name", TOGGLE_PAGES)
def test_sidebar_buttons_open_their_panels(site, browser, name, which, width):
    """☰ (chapter list) and the contents button: a panel a reader can open at this width."""
    page = _open(browser, (site / name).as_uri(), width)
    try:
        buttons = [b for b in page.query_selector_all(f"button.{which}-toggle") if b.is_visible()]
        before = page.evaluate(PANEL, which)
        if not buttons:
            # Wide screens show the page contents beside the text, without a button.
            assert before, f"{name} at {width} px: no visible {which}-toggle button and no {which} panel"
            return
        if width < 992:
            assert not before, f"{name} at {width} px: the {which} panel is open before any click"
        buttons[0].click()
        page.wait_for_timeout(400)
        after = page.evaluate(PANEL, which)
        assert after != before, f"{name} at {width} px: the {which}-toggle button does nothing"
        if not after:  # a wide screen: the click collapsed the open sidebar; a second one restores it
            buttons[0].click()
            page.wait_for_timeout(400)
            assert page.evaluate(PANEL, which), f"{name} at {width} px: the {which} panel does not reopen"
    finally:
        page.close()


def _cell_text(fragment: str) -> str:
    return re.sub(r"<[^>]+>", "", fragment).strip()


def test_intro_run_times_match_the_chapter_footers(site):
    """The table "How this copy was built" repeats what each chapter's footer says."""
    intro = (site / "intro.html").read_text(encoding="utf-8")
    section = intro[intro.index('id="how-this-copy-was-built"'):]
    section = section[: section.index("</table>")]
    problems = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", section, flags=re.S)[1:]:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        chapter = re.search(r'href="([^"#]+)', cells[0]).group(1)
        table_time = _cell_text(cells[3])
        page = (site / chapter).read_text(encoding="utf-8")
        footer = re.findall(r"Run time</p>.*?Total:</strong>\s*([^<]+)<", page, flags=re.S)
        if not footer:
            problems.append(f"{chapter}: no run-time footer")
        elif footer[-1].strip() != table_time:
            problems.append(f"{chapter}: the introduction says {table_time}, the footer {footer[-1].strip()}")
    assert not problems, "\n".join(problems)


def test_chapter_figures_have_captions(survey):
    """A figure says what it shows: a caption, and an alt text that is not the image's file name."""
    problems = []
    for (name, width), data in survey["pages"].items():
        if width != WIDTHS[-1] or not name.startswith("generated/"):
            continue
        for number, fig in enumerate(data["figures"], 1):
            missing = [
                what for what, bad in (
                    ("caption", not fig["caption"]),
                    ("alt text other than a file name",
                     not fig["alt"] or re.search(r"[0-9a-f]{32}|\.(png|jpe?g|svg)$", fig["alt"])),
                ) if bad
            ]
            if missing:
                problems.append(f"{name} figure {number} (cell {fig['cell']!r}): no {' and no '.join(missing)}")
    assert not problems, _report(problems, "figures without caption or alt text")
