"""The built docs site: math rendered (MathML, no raw TeX), lists rendered, API reference not empty,
and the OT plugin page as a real browser draws it.

Builds the site once (mkdocs --strict, as CI's docs build) into a temporary folder. Skips with the
reason when the `docs` extra is not installed; the screenshot skips when Chromium is absent
(.ci/run installs Debian's chromium).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEEDS = ("mkdocs", "mkdocstrings", "pymdownx", "latex2mathml")
missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(missing), reason=f"docs extra not installed ({', '.join(missing)}): "
                                                      "pip install -e '.[docs]'")
#: TeX left as source in the HTML: a $$ delimiter or a backslash command, outside code and MathML
RAW_TEX = re.compile(r"\$\$|\\[a-zA-Z]{2,}")
HIDDEN = re.compile(r"<pre.*?</pre>|<code.*?</code>|<math.*?</math>|<script.*?</script>", re.S)
OT_PAGE = os.path.join("plugins", "mmcore-plugin-ot", "index.html")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"mkdocs build --strict failed:\n{r.stderr[-3000:]}"
    return str(out)


def read(site, rel):
    with open(os.path.join(site, rel), encoding="utf-8") as f:
        return f.read()


def test_no_page_shows_raw_tex(site):
    bad = []
    for path in sorted(glob.glob(os.path.join(site, "**", "*.html"), recursive=True)):
        text = HIDDEN.sub("", read(site, path))
        bad += [f"{os.path.relpath(path, site)}: ...{text[max(0, m.start() - 40):m.end() + 40]!r}..."
                for m in RAW_TEX.finditer(text)]
    assert not bad, "raw TeX in the built site (not rendered to MathML):\n" + "\n".join(bad[:20])


def test_equations_are_mathml_on_the_plugin_pages(site):
    ot = read(site, OT_PAGE)
    assert ot.count("<math") > 50, "the OT plugin page should render its equations as MathML"
    assert 'display="block"' in ot  # display formulas stay display formulas
    # a formula with a line starting with '-' stays one formula, not a list
    assert "<li>\\tfrac" not in ot and "<li>2\\operatorname" not in ot


def test_a_list_right_under_a_paragraph_renders_as_a_list(site):
    ot = read(site, OT_PAGE)
    assert re.search(r"Choices where the paper is silent:</p>\s*<ul>", ot), "list ran into the paragraph"


@pytest.mark.parametrize("page,expected", [
    ("api/core/index.html", ["load_spec", "BuildContext", "zero_invalid", "NumericalRangeError", "plan_scores"]),
    ("api/testing/index.html", ["check_component", "check_junk_padding", "ot_problems"]),
    ("api/kernels/index.html", ["sinkhorn_plan", "multimarginal_sinkhorn_plan", "bures_wasserstein_squared", "selective_scan"]),
])
def test_api_reference_pages_document_the_public_api(site, page, expected):
    html = read(site, page)
    for name in expected:
        assert re.search(rf'id="[\w.]*{name}"', html), f"{page}: no entry for {name}"
    assert html.count('class="doc doc-contents') >= len(expected), f"{page}: entries without docstrings"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium on this machine (.ci/run installs it)")
def test_the_ot_plugin_page_renders_in_a_real_browser(site, tmp_path):
    shot = tmp_path / "ot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400", f"--screenshot={shot}"]
    subprocess.run(["chromium", *flags, "file://" + os.path.join(site, OT_PAGE)], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 50_000, "no screenshot (or an empty page)"
    mpimg = pytest.importorskip("matplotlib.image", reason="matplotlib reads the screenshot")
    img = mpimg.imread(str(shot))
    assert img.shape[0] >= 2000 and img[..., :3].std() > 0.05, "the page drew nothing"
