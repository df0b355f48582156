"""MkDocs hook: serve MathJax from the built site itself, so formulas render offline (no CDN).

At build time the npm registry's package ``mathjax@3.2.2`` is fetched with ``npm pack`` (once; it is cached),
its tarball is checked against the pinned sha512 ``integrity`` of that release, and the browser components
MathJax loads (``tex-mml-chtml.js``, its TeX extensions, fonts, menu and accessibility parts) are copied to
``<site>/javascripts/mathjax/``. ``docs/javascripts/mathjax.js`` configures it; ``mkdocs.yml`` loads both.

Where the files come from, first match wins:

* ``LIPVERIFY_MATHJAX``: an unpacked ``mathjax-3.2.2`` package folder (the one holding ``es5/``) or its ``.tgz``;
* the cache ``$XDG_CACHE_HOME/lipverify-docs/mathjax-3.2.2`` (default ``~/.cache/...``), filled by a previous build;
* ``npm pack mathjax@3.2.2`` (needs Node.js/npm and the npm registry).

It also lets display math written inside a paragraph (a ``$$ ... $$`` line right under a line of text, as GitHub
renders it) reach MathJax as display math: ``pymdownx.arithmatex`` only knows ``$$`` blocks set off by blank lines,
so ``on_page_markdown`` adds those blank lines (the files are not changed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

MATHJAX_VERSION = "3.2.2"
# the registry's `dist.integrity` of mathjax@3.2.2 (`npm view mathjax@3.2.2 dist.integrity`)
MATHJAX_INTEGRITY = "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
# what the page loads (tex-mml-chtml.js) and what it loads on demand, relative to es5/; latest.js (which asks a
# CDN for the newest version) and the other combined bundles are left out
MATHJAX_PARTS = ("tex-mml-chtml.js", "input", "output", "ui", "a11y", "sre", "adaptors")
SITE_FOLDER = "javascripts/mathjax"
ENV_VAR = "LIPVERIFY_MATHJAX"


def _fail(message: str) -> Exception:
    from mkdocs.exceptions import PluginError  # here, so that separate_display_math is testable without mkdocs

    return PluginError(f"docs/hooks/mathjax.py: {message}")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lipverify-docs" / f"mathjax-{MATHJAX_VERSION}"


def _check_integrity(tgz: Path) -> None:
    algo, _, expected = MATHJAX_INTEGRITY.partition("-")
    digest = base64.b64encode(hashlib.new(algo, tgz.read_bytes()).digest()).decode()
    if digest != expected:
        raise _fail(f"{tgz} is not mathjax@{MATHJAX_VERSION} as published (its {algo} is {digest}, expected "
                    f"{expected}); delete it and build again")


def _unpack(tgz: Path, dest: Path) -> Path:
    """Unpack the npm tarball ``tgz`` (after the integrity check) into ``dest``; return the package folder."""
    _check_integrity(tgz)
    with tarfile.open(tgz, "r:gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name)
            if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
                raise _fail(f"{tgz}: unexpected member {member.name!r}; delete it and build again")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python < 3.10.12 / 3.11.4: the members were checked above
            tar.extractall(dest)
    return dest / "package"


def _check_package(folder: Path) -> Path:
    """Return the ``es5`` folder of an unpacked mathjax package after checking its name and version."""
    manifest = folder / "package.json"
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _fail(f"{manifest} is not readable ({exc}); point {ENV_VAR} at an unpacked "
                    f"mathjax-{MATHJAX_VERSION} package, or unset it") from exc
    if meta.get("name") != "mathjax" or meta.get("version") != MATHJAX_VERSION:
        raise _fail(f"{folder} holds {meta.get('name')}@{meta.get('version')}, the docs need "
                    f"mathjax@{MATHJAX_VERSION}")
    es5 = folder / "es5"
    missing = [part for part in MATHJAX_PARTS if not (es5 / part).exists()]
    if missing:
        raise _fail(f"{es5} lacks {', '.join(missing)}; delete the folder and build again")
    return es5


def _npm_pack(workdir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise _fail(f"the docs serve MathJax from the site and fetch it at build time with `npm pack "
                    f"mathjax@{MATHJAX_VERSION}`, but npm is not installed: install Node.js/npm, or set "
                    f"{ENV_VAR} to an unpacked mathjax-{MATHJAX_VERSION} package (or its .tgz)")
    cmd = [npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--silent", "--pack-destination", str(workdir)]
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    tgz = workdir / f"mathjax-{MATHJAX_VERSION}.tgz"
    if done.returncode != 0 or not tgz.is_file():
        raise _fail(f"`{' '.join(cmd[1:])}` failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return tgz


def mathjax_es5() -> Path:
    """The ``es5`` folder of a checked mathjax@3.2.2 package, fetching it into the cache if needed."""
    given = os.environ.get(ENV_VAR)
    if given:
        path = Path(given)
        if path.is_file():
            return _check_package(_unpack(path, Path(tempfile.mkdtemp(prefix="lipverify-mathjax-"))))
        return _check_package(path)
    cache = _cache_dir()
    if (cache / "package.json").is_file():
        return _check_package(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:
        package = _unpack(_npm_pack(Path(tmp)), Path(tmp))
        _check_package(package)
        try:
            package.rename(cache)  # atomic: a half-unpacked cache is never seen
        except OSError:
            if not (cache / "package.json").is_file():  # not a parallel build that got there first
                raise
    return _check_package(cache)


_found: dict[str, Path] = {}


def on_config(config, **kwargs):
    _found["es5"] = mathjax_es5()  # fail before building the pages, not after
    return config


def on_post_build(config, **kwargs):
    es5 = _found["es5"]
    dest = Path(config["site_dir"]) / SITE_FOLDER
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for part in MATHJAX_PARTS:
        src = es5 / part
        if src.is_dir():
            shutil.copytree(src, dest / part)
        else:
            shutil.copy2(src, dest / part)


_FENCE = re.compile(r"^\s*(```+|~~~+)")


def separate_display_math(markdown: str) -> str:
    """``markdown`` with a blank line before and after each top-level ``$$ ... $$`` display (one line, or from a line
    starting with ``$$`` to the line ending with the closing ``$$``) that touches a line of text; fenced code is kept."""
    lines, out, i, fence = markdown.split("\n"), [], 0, None
    while i < len(lines):
        line = lines[i]
        if fence is not None or _FENCE.match(line):
            opener = _FENCE.match(line)
            if fence is None:
                fence = opener.group(1)
            elif line.strip().startswith(fence):
                fence = None
            out.append(line)
            i += 1
            continue
        if not line.startswith("$$"):
            out.append(line)
            i += 1
            continue
        end = i if line.find("$$", 2) != -1 else next((j for j in range(i + 1, len(lines)) if "$$" in lines[j]), None)
        if end is None or not lines[end].rstrip().endswith("$$"):  # unclosed, or text after the closing $$: leave it
            out.append(line)
            i += 1
            continue
        if out and out[-1].strip():
            out.append("")
        out.extend(lines[i:end + 1])
        if end + 1 < len(lines) and lines[end + 1].strip():
            out.append("")
        i = end + 1
    return "\n".join(out)


def on_page_markdown(markdown, **kwargs):
    return separate_display_math(markdown)
