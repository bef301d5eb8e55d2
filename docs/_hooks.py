"""mkdocs hooks: pull each plugin's README (its one docs page) and its images into the site, and
generate the spec reference from the live JSON Schema, so neither is ever a stale copy."""

from __future__ import annotations

import glob
import os

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


def spec_reference() -> str:
    """The spec's sections and every registered component's params, as markdown tables."""
    from mmcore.registry import KINDS, get_registry
    from mmcore.spec.models import PipelineSpec
    from mmcore.spec.validate import _unwrap_model as _submodel

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
