"""mkdocs hooks: pull each plugin's README (its one docs page) and its images into the site, and
generate the spec reference from the live JSON Schema, so neither is ever a stale copy; render math
to MathML at build time (no JavaScript, works offline) and give lists the blank line that
Python-Markdown needs but GitHub does not."""

from __future__ import annotations

import glob
import html
import logging
import os
import re

from mkdocs.structure.files import File

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN_GLOBS = ("plugins/*/README.md", "plugins/*/docs/*.png", "examples/third_party_aligner/README.md")


def on_files(files, config):
    for pattern in PLUGIN_GLOBS:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern))):
            rel = os.path.relpath(path, ROOT)
            files.append(File(rel, ROOT, config["site_dir"], config["use_directory_urls"]))
    files.append(File.generated(config, "spec-reference.md", content=spec_reference()))
    return files


FENCE = re.compile(r"^\s*(```|~~~)")
LIST_ITEM = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+\S")
#: what pymdownx.arithmatex (generic mode) leaves in the HTML: \(...\) inline, \[...\] display
ARITHMATEX = re.compile(r'<(span|div) class="arithmatex">\s*\\([(\[])(.*?)\\[)\]]\s*</\1>', re.S)
SPHINX_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):(<code)")
log = logging.getLogger("mkdocs.hooks.math")
#: TeX that latex2mathml 3.x leaves as source, rewritten to what it renders
TEX_FIXES = [(re.compile(r"\\(?:big|Big|bigg|Bigg)\\[lr]Vert"), r"\\|"), (re.compile(r"\\arg(?![a-zA-Z])"), r"\\mathrm{arg}\\,"),
             (re.compile(r"\\lfloor(?![a-zA-Z])"), "\u230a"), (re.compile(r"\\rfloor(?![a-zA-Z])"), "\u230b")]


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Blank lines where Python-Markdown needs them and GitHub does not: before a list that starts right
    under a paragraph line, and around a display formula ($$ ... $$, possibly over several lines)."""
    out, fenced, in_math, prev = [], False, False, ""
    for line in markdown.split("\n"):
        stripped = line.strip()
        if FENCE.match(line):
            fenced = not fenced
        elif fenced:
            pass
        elif not in_math and stripped.startswith("$$"):
            if prev.strip():
                out.append("")
            in_math = stripped.count("$$") % 2 == 1
            if not in_math:  # one-line display formula, maybe followed by text
                prev = _close_display(line, out)
                continue
        elif in_math:
            if "$$" in stripped:
                in_math = False
                prev = _close_display(line, out)
                continue
        elif LIST_ITEM.match(line) and prev.strip() and not LIST_ITEM.match(prev) \
                and not prev.startswith((" ", "\t", "|", ">")) and not LIST_ITEM.match(line).group(1):
            out.append("")
        out.append(line)
        prev = line
    return "\n".join(out)


def _close_display(line: str, out: list[str]) -> str:
    """Append a formula's closing line '...$$ text' as '...$$', a blank line, then 'text' (if any);
    return the new previous line ('' or the text)."""
    end = line.rindex("$$") + 2
    rest = line[end:].strip()
    out += [line[:end], ""] + ([rest] if rest else [])
    return rest


def on_page_content(content: str, page, config, files) -> str:
    """Every arithmatex span/div becomes MathML (Chromium, Firefox and Safari render it natively)."""
    from latex2mathml.converter import convert

    def mathml(m: re.Match) -> str:
        tex = html.unescape(m.group(3)).strip()
        for pattern, repl in TEX_FIXES:
            tex = pattern.sub(repl, tex)
        try:
            return convert(tex, display="block" if m.group(2) == "[" else "inline")
        except Exception as exc:  # a formula latex2mathml cannot read: say where, keep the source visible
            log.warning("%s: cannot render math %r: %s", page.file.src_uri, tex[:80], exc)
            return m.group(0)

    content = ARITHMATEX.sub(mathml, content)
    return SPHINX_ROLE.sub(r"\1", content)  # docstrings' :func:`x` -> `x` (mkdocstrings leaves the role)


def spec_reference() -> str:
    """The spec's sections and every registered component's params, as markdown tables."""
    from mmcore.registry import KINDS, get_registry
    from mmcore.spec.models import PipelineSpec
    from mmcore.spec.rules.pydantic_errors import unwrap_model as _submodel

    reg = get_registry()
    out = ["# Spec reference", "",
           "Generated at docs build time from the pydantic models and the registry of the environment "
           "that built the docs (`mmcore schema` prints the same as JSON Schema).", ""]
    out += _model_table("Top level", PipelineSpec)
    for name, f in PipelineSpec.model_fields.items():
        model = _submodel(f.annotation)
        if model is not None and name not in ("aligner", "fuser", "head", "imputer", "data"):
            out += _model_table(f"`{name}`", model)
    for kind in KINDS:
        for e in reg.entries(kind):
            out += _model_table(f"{kind} `{e.name}` ({e.provided_by})", e.params, e.description)
    return "\n".join(out) + "\n"


def _model_table(title: str, model, description: str = "") -> list[str]:
    from pydantic_core import PydanticUndefined

    rows = [f"## {title}", ""]
    if description:
        rows += [description, ""]
    if not model.model_fields:
        return rows + ["(no params)", ""]
    rows += ["| key | type | default | description |", "|---|---|---|---|"]
    for name, f in model.model_fields.items():
        if f.default is not PydanticUndefined:
            default = f"`{f.default!r}`"
        elif f.default_factory is not None:
            default = "(see type)"
        else:
            default = "**required**"
        ann = getattr(f.annotation, "__name__", None) or str(f.annotation).replace("typing.", "")
        desc = (f.description or "").replace("|", "\\|").replace("\n", " ")
        constraints = ", ".join(str(m) for m in f.metadata)
        rows.append(f"| `{name}` | `{ann}`{' ' + constraints if constraints else ''} | {default} | {desc} |")
    return rows + [""]
