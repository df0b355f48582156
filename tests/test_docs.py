"""The documentation: offline site (no script, stylesheet or font from another host), MathJax served from the site,
proof cross-references as links, and the numbers of "Which bound should I use?" taken from the generated reports.

The site-building tests need the ``docs`` extra (``pip install ".[docs]"``) and npm (``docs/hooks/mathjax.py`` fetches
MathJax from the npm registry at build time); without mkdocs they are skipped, unless ``LIPVERIFY_DOCS_REQUIRED=1``
(set by ``.ci/run``'s docs block), which turns the skip into a failure.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROOFS = ROOT / "proofs"
REPORTS = ROOT / "docs" / "reports"
CHOOSING = ROOT / "docs" / "guide" / "choosing.md"
HOOK = ROOT / "docs" / "hooks" / "mathjax.py"


def _hook():
    spec = importlib.util.spec_from_file_location("lipverify_docs_mathjax_hook", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

# ---------------------------------------------------------------------------------------------------------------
# the offline check


def _is_external(url: str) -> bool:
    """True when loading ``url`` would contact another host: http(s) or protocol-relative ``//host/...``."""
    url = url.strip().strip("'\"").strip()
    return bool(re.match(r"(?i)(https?:)?//", url))


_CSS_URL = re.compile(r"""(?i)url\(\s*(?P<q>['"]?)(?P<url>.*?)(?P=q)\s*\)""")
_CSS_IMPORT = re.compile(r"""(?i)@import\s+(?P<q>['"])(?P<url>.*?)(?P=q)""")  # @import url(...) is a url(...)


def _css_external(css: str) -> list[str]:
    urls = [m.group("url") for m in _CSS_URL.finditer(css)] + [m.group("url") for m in _CSS_IMPORT.finditer(css)]
    return [u for u in urls if _is_external(u)]


# elements whose attribute makes the browser load something (links <a href> are navigation and are allowed)
_LOADING = {"script": ("src",), "link": ("href",), "img": ("src", "srcset"), "iframe": ("src",), "frame": ("src",),
            "source": ("src", "srcset"), "video": ("src", "poster"), "audio": ("src",), "track": ("src",),
            "embed": ("src",), "object": ("data",), "input": ("src",)}


class _Resources(HTMLParser):
    """Collects the URLs an HTML page loads, its local script/stylesheet references and its inline CSS."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.loads: list[tuple[str, str]] = []  # (tag.attribute, url)
        self.css: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in _LOADING.get(tag, ()):
            value = attrs.get(name)
            if value:
                urls = [part.split()[0] for part in value.split(",") if part.strip()] if name == "srcset" else [value]
                self.loads.extend((f"<{tag} {name}>", u) for u in urls)
        if attrs.get("style"):
            self.css.append(attrs["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.css.append(data)


def external_references(site: Path) -> list[str]:
    """Every reference in the built site ``site`` that makes a browser contact another host, as
    ``"page: what url"``: ``<script src>``, ``<link href>``, images, frames, media, and CSS ``url(...)`` /
    ``@import`` in stylesheets, ``<style>`` blocks and ``style`` attributes. Empty when the site is offline."""
    found = []
    for page in sorted(site.rglob("*.html")):
        parser = _Resources()
        parser.feed(page.read_text(encoding="utf-8"))
        rel = page.relative_to(site)
        found += [f"{rel}: {what} {url}" for what, url in parser.loads if _is_external(url)]
        found += [f"{rel}: inline CSS {url}" for css in parser.css for url in _css_external(css)]
    for sheet in sorted(site.rglob("*.css")):
        found += [f"{sheet.relative_to(site)}: CSS {url}" for url in _css_external(sheet.read_text(encoding="utf-8"))]
    return found


def test_offline_check_flags_every_way_of_loading_from_another_host(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "index.html").write_text(
        '<html><head><script src="https://cdn.example.org/mathjax.js"></script>'
        "<link rel=stylesheet href='//fonts.example.org/css?family=Roboto'>"
        '<LINK rel="preconnect" HREF="HTTPS://fonts.example.com">'
        "<style>@import url('https://example.org/a.css'); body { background: url(http://example.org/b.png) }</style>"
        '</head><body><img srcset="x.png 1x, https://example.org/y.png 2x">'
        '<div style="background-image: url( &quot;https://example.org/c.png&quot; )"></div>'
        '<a href="https://example.org/">a link is not a load</a></body></html>', encoding="utf-8")
    (tmp_path / "site.css").write_text('@import "https://example.org/d.css";\n'
                                       '@font-face { src: url(https://example.org/e.woff2) }', encoding="utf-8")
    found = external_references(tmp_path)
    for url in ("https://cdn.example.org/mathjax.js", "//fonts.example.org/css?family=Roboto", "HTTPS://fonts.example.com",
                "https://example.org/a.css", "http://example.org/b.png", "https://example.org/y.png",
                "https://example.org/c.png", "https://example.org/d.css", "https://example.org/e.woff2"):
        assert sum(url in line for line in found) == 1, (url, found)
    assert len(found) == 9, found
    assert not any("example.org/\n" in line or line.endswith("https://example.org/") for line in found), found


def test_offline_check_accepts_local_and_data_urls(tmp_path):
    (tmp_path / "index.html").write_text(
        '<script src="javascripts/mathjax/tex-mml-chtml.js"></script><link rel=stylesheet href="../assets/main.css">'
        "<style>a { background: url(\"data:image/svg+xml;charset=utf-8,<svg xmlns='http://www.w3.org/2000/svg'/>\") }"
        '</style><img src="data:image/png;base64,AAAA"><a href="https://example.org/">link</a>', encoding="utf-8")
    (tmp_path / "a.css").write_text("@font-face { src: url(fonts/x.woff2) } b { c: url('/abs/local.png') }",
                                    encoding="utf-8")
    assert external_references(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------------
# the built site


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _require_docs_extra() -> None:
    missing = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python") if not _installed(m)]
    if missing:
        reason = f"the docs extra is not installed ({', '.join(missing)} missing): pip install '.[docs]'"
        if os.environ.get("LIPVERIFY_DOCS_REQUIRED") == "1":
            pytest.fail(f"LIPVERIFY_DOCS_REQUIRED=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built by ``mkdocs build --strict`` (the command CI and the README use) in a temporary folder."""
    _require_docs_extra()
    out = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
           "--site-dir", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"`mkdocs build --strict` failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return out


def test_built_site_loads_nothing_from_other_hosts(site):
    assert (site / "index.html").is_file()
    assert external_references(site) == []


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.loads: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.loads.append(("<a href>", href))


def _local_targets(page: Path, site: Path) -> list[tuple[str, Path]]:
    """(url, file it resolves to) for each relative URL that ``page`` loads or links to."""
    out = []
    for parser in (_Resources(), _Anchors()):
        parser.feed(page.read_text(encoding="utf-8"))
        for _, url in parser.loads:
            path = unquote(urlsplit(url).path)
            if _is_external(url) or urlsplit(url).scheme or not path:  # other hosts, data:, mailto:, #anchors
                continue
            target = (site / path.lstrip("/")) if path.startswith("/") else (page.parent / path)
            out.append((url, target / "index.html" if target.is_dir() else target))
    return out


def test_every_local_script_stylesheet_and_link_of_the_site_exists(site):
    missing = []
    for page in sorted(site.rglob("*.html")):
        for url, target in _local_targets(page, site):
            if not target.is_file():
                missing.append(f"{page.relative_to(site)}: {url}")
    assert missing == []


def test_mathjax_is_served_from_the_site_with_its_fonts(site):
    mathjax = site / "javascripts" / "mathjax"
    assert (mathjax / "tex-mml-chtml.js").stat().st_size > 500_000  # the real component, not a stub
    fonts = mathjax / "output" / "chtml" / "fonts" / "woff-v2"
    assert (fonts / "MathJax_Main-Regular.woff").is_file() and (fonts / "MathJax_Math-Italic.woff").is_file()
    assert not (mathjax / "latest.js").exists()  # latest.js asks a CDN for the newest version
    page = (site / "proofs" / "k4" / "index.html").read_text(encoding="utf-8")
    assert 'class="arithmatex"' in page  # the proof's formulas are there for MathJax to typeset
    scripts = re.findall(r'<script src="([^"]+)"', page)
    config, engine = "../../javascripts/mathjax.js", "../../javascripts/mathjax/tex-mml-chtml.js"
    assert config in scripts and engine in scripts and scripts.index(config) < scripts.index(engine), scripts
    assert "fonts.googleapis.com" not in page and "fonts.gstatic.com" not in page


def test_proof_cross_references_are_links_in_the_built_site(site):
    page = (site / "proofs" / "k2" / "index.html").read_text(encoding="utf-8")
    for target in ("kstar", "k4", "k1", "rigorous_arithmetic"):
        assert f'href="../{target}/"' in page, target
        assert (site / "proofs" / target / "index.html").is_file()


_VOID = {"br", "img", "input", "meta", "link", "hr", "wbr", "source", "col", "area", "base", "embed", "track"}


class _TextOutsideMath(HTMLParser):
    """The text of a page outside formulas (arithmatex), code, scripts, styles and the navigation."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[bool] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in _VOID:
            skip = tag in ("code", "pre", "script", "style", "nav", "title") or "arithmatex" in (dict(attrs).get("class") or "")
            self.stack.append(skip)

    def handle_endtag(self, tag):
        if tag not in _VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if not any(self.stack):
            self.text.append(data)


def raw_tex(html: str) -> list[str]:
    """Snippets of TeX (a ``\\command`` or a ``$``) in the text of ``html`` outside the formulas MathJax typesets."""
    parser = _TextOutsideMath()
    parser.feed(html)
    text = "".join(parser.text)
    return [text[max(0, m.start() - 40):m.end() + 30] for m in re.finditer(r"\\[A-Za-z]+|\$", text)]


def test_raw_tex_finder_sees_math_that_missed_the_formula_markup():
    html = ('<p>ok <span class="arithmatex">\\(\\rho\\)</span> <code>$HOME \\n</code></p>'
            '<p>$<span class="arithmatex">\\(x\\)</span>$ and $\\rho = $ left raw</p><nav>\\(a\\)</nav>')
    found = raw_tex(html)
    assert len(found) == 5 and "\\rho" in found[3], found  # two stray $, then $ \\rho $ of "$\\rho = $"


def test_every_formula_of_the_site_reaches_mathjax(site):
    """No page shows TeX as text: display math inside a paragraph (set off by docs/hooks/mathjax.py) and
    ``$x = $`` (``smart_dollar: false``) are formulas, as they are on GitHub."""
    raw = {str(p.relative_to(site)): raw_tex(p.read_text(encoding="utf-8")) for p in sorted(site.rglob("*.html"))}
    assert {page: snippets for page, snippets in raw.items() if snippets} == {}
    assert (site / "proofs" / "activations" / "index.html").read_text(encoding="utf-8").count('<div class="arithmatex">') >= 5


def test_display_math_inside_a_paragraph_is_set_off_by_blank_lines():
    separate = _hook().separate_display_math
    text = ("Let $x$ and\n$$a = b$$\nwhere $b$ is.\n\n$$\nc = d\n$$\ntext\n"
            "```\n$$ in code $$\nkept\n```\n$$e$$ and text after\n$$unclosed\n")
    assert separate(text) == ("Let $x$ and\n\n$$a = b$$\n\nwhere $b$ is.\n\n$$\nc = d\n$$\n\ntext\n"
                              "```\n$$ in code $$\nkept\n```\n$$e$$ and text after\n$$unclosed\n")
    assert separate("a\n\n$$x$$\n\nb") == "a\n\n$$x$$\n\nb"


def test_markdown_sources_have_no_control_characters():
    """A stray escape (Python's "\\b" for "\\\\b") leaves a backspace where TeX needed \\beta: MathJax then fails."""
    sources = sorted(PROOFS.glob("*.md")) + sorted((ROOT / "docs").rglob("*.md"))
    bad = [f"{path.relative_to(ROOT)}:{n}: {ch!r}" for path in sources
           for n, line in enumerate(path.read_bytes().decode("utf-8").split("\n"), 1)
           for ch in line if ord(ch) < 32 and ch != "\t"]
    assert bad == []


def test_mathjax_source_must_be_the_pinned_release(tmp_path, monkeypatch):
    pytest.importorskip("mkdocs")
    hook = _hook()
    (tmp_path / "package.json").write_text(json.dumps({"name": "mathjax", "version": "3.2.1"}), encoding="utf-8")
    monkeypatch.setenv(hook.ENV_VAR, str(tmp_path))
    with pytest.raises(Exception, match="mathjax@3.2.1, the docs need mathjax@3.2.2"):
        hook.mathjax_es5()
    tgz = tmp_path / "mathjax-3.2.2.tgz"
    tgz.write_bytes(b"not the release")
    with pytest.raises(Exception, match="is not mathjax@3.2.2 as published"):
        hook._check_integrity(tgz)
    algo, _, digest = hook.MATHJAX_INTEGRITY.partition("-")
    assert algo == "sha512" and len(base64.b64decode(digest)) == hashlib.sha512().digest_size


# ---------------------------------------------------------------------------------------------------------------
# proof cross-references in the Markdown sources (work on GitHub and in the site: relative links between siblings)

_MD_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def plain_proof_references(text: str, proof_names: set[str]) -> list[tuple[int, str]]:
    """(line number, name) for each mention of a proof file (``k4.md``, ``proofs/k4.md``) that is not a Markdown link."""
    names = "|".join(re.escape(n) for n in sorted(proof_names, key=len, reverse=True))
    mention = re.compile(rf"(?<![\w/.-])(?:proofs/)?({names})(?![\w.-])")
    found, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        found += [(number, m.group(1)) for m in mention.finditer(_MD_LINK.sub("", line))]
    return found


def test_plain_reference_finder_sees_backticked_and_bare_names_but_not_links():
    names = {"k4.md", "kstar.md", "k1.md"}
    text = ("see `k4.md` and proofs/kstar.md here\n"
            "a link [`k4.md`](k4.md), a linked path [`proofs/k1.md`](k1.md)\n"
            "```\nk1.md in a code block\n```\n"
            "not a proof: lipverify/k4.md.bak, xk4.md, DESIGN.md\n")
    assert plain_proof_references(text, names) == [(1, "k4.md"), (1, "kstar.md")]


def test_proof_cross_references_are_markdown_links():
    names = {p.name for p in PROOFS.glob("*.md")}
    assert {"k4.md", "kstar.md", "rigorous_arithmetic.md"} <= names
    plain, broken = [], []
    for proof in sorted(PROOFS.glob("*.md")):
        text = proof.read_text(encoding="utf-8")
        plain += [f"proofs/{proof.name}:{n}: {name} -> write [`{name}`]({name})"
                  for n, name in plain_proof_references(text, names)]
        for _, target in _MD_LINK.findall(text):
            path = urlsplit(target).path
            if path.endswith(".md") and not urlsplit(target).scheme and not (proof.parent / path).is_file():
                broken.append(f"proofs/{proof.name}: link to {target}")
    assert plain == [], "proof files named in plain text instead of a relative Markdown link:\n" + "\n".join(plain)
    assert broken == []


# ---------------------------------------------------------------------------------------------------------------
# "Which bound should I use?": each number of a sourced table is in the same row of the cited report

_NUMBER = re.compile(r"(?<![\w.^])\d+(?:\.\d+)?(?![\w.^])")
_SOURCE = re.compile(r"^Source: \[[^\]]*\]\(\.\./reports/(?P<file>[\w.]+\.md)\)")


def _cells(line: str) -> list[str]:
    return [c.strip().replace("`", "") for c in line.strip().strip("|").split("|")]


def _tables(text: str):
    """(header cells, row cells, line number, source report or None) for each table row; the source is the latest
    ``Source: [..](../reports/x.md)`` line of the same section."""
    lines, source, header = text.splitlines(), None, None
    for number, line in enumerate(lines, 1):
        if line.startswith("#"):
            source = None
        elif m := _SOURCE.match(line):
            source = m.group("file")
        if not line.startswith("|"):
            header = None
            continue
        cells = _cells(line)
        if header is None:
            header = cells
        elif not set("".join(cells)) <= set("-: "):
            yield header, cells, number, source


def _key(header: list[str], cells: list[str]) -> tuple[str, ...]:
    return (cells[0], cells[1]) if len(header) > 1 and header[1] == "conv" else (cells[0],)


def unsourced_numbers(page: str, reports: Path) -> tuple[list[str], int]:
    """Numbers of the sourced tables of ``page`` that are not in a row with the same key (first cell; and conv) of the
    cited report, and how many numbers were checked."""
    by_report: dict[str, dict[tuple[str, ...], set[str]]] = {}
    bad, checked = [], 0
    for header, cells, number, source in _tables(page):
        if source is None:
            continue
        if source not in by_report:
            rows: dict[tuple[str, ...], set[str]] = {}
            for rh, rc, _, _ in _tables((reports / source).read_text(encoding="utf-8")):
                rows.setdefault(_key(rh, rc), set()).update(_NUMBER.findall(" | ".join(rc[len(_key(rh, rc)):])))
            by_report[source] = rows
        key = _key(header, cells)
        numbers = _NUMBER.findall(" | ".join(cells[len(key):]))
        known = by_report[source].get(key)
        if known is None:
            bad.append(f"line {number}: no row {' / '.join(key)!r} in reports/{source}")
            continue
        checked += len(numbers)
        bad += [f"line {number}: {n} (row {' / '.join(key)!r}) is not in reports/{source}" for n in numbers if n not in known]
    return bad, checked


def test_choosing_page_numbers_are_those_of_the_cited_reports():
    bad, checked = unsourced_numbers(CHOOSING.read_text(encoding="utf-8"), REPORTS)
    assert bad == [], "docs/guide/choosing.md is out of step with docs/reports (update the page):\n" + "\n".join(bad)
    assert checked >= 100  # the tables were found and read


def test_choosing_check_flags_a_number_missing_from_the_report(tmp_path):
    (tmp_path / "t.md").write_text("| method | conv | value | s |\n|---|---|---|---|\n| k4 | implicit | 118.62 | 0.433 |\n"
                                   "| k4 | explicit | 118.7 | 0.446 |\n", encoding="utf-8")
    page = ("# A\n\nSource: [T](../reports/t.md)\n\n| method | conv | l1 |\n|---|---|---|\n"
            "| `k4` | implicit | 118.62 |\n| `k4` | explicit | 118.62 |\n| `k3` | implicit | 1 |\n\n"
            "# B\n\n| method | conv | l1 |\n|---|---|---|\n| `k4` | implicit | 999 |\n")
    bad, checked = unsourced_numbers(page, tmp_path)
    assert checked == 2
    assert bad == ["line 8: 118.62 (row 'k4 / explicit') is not in reports/t.md",
                   "line 9: no row 'k3 / implicit' in reports/t.md"]


def test_no_merge_conflict_markers_in_the_sources():
    """A merge that left ``<<<<<<<`` / ``>>>>>>>`` lines in a proof or module would still build and import."""
    sources = [p for p in ROOT.rglob("*") if p.suffix in {".py", ".md", ".toml", ".yml"} and ".git" not in p.parts
               and "site" not in p.parts and ".venv" not in p.parts]
    bad = [f"{p.relative_to(ROOT)}:{n}" for p in sources
           for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").split("\n"), 1)
           if line.startswith(("<<<<<<< ", ">>>>>>> ")) or line == "======="]
    assert bad == []
