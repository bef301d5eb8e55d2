"""Losses: registered loss components, or auxiliary losses a component of this spec returns."""

from __future__ import annotations

from ...errors import SpecIssue, did_you_mean
from ...registry import KNOWN_PROVIDERS, provider_hint
from .components import resolve_params
from .context import Context


def losses(ctx: Context) -> list[SpecIssue]:
    """Each ``losses`` key is a registered loss (params validated) or an aux loss of a spec component."""
    issues, registry = [], ctx.registry
    declared = {name for entry in ctx.found for name in entry.aux_losses}
    for name, ls in ctx.spec.losses.items():
        path = ("losses", name)
        entry = registry.find("loss", name)
        if entry is not None:
            issues += resolve_params(ctx, path, "loss", entry, ls.params)
        elif name not in declared:
            known = sorted(declared | set(registry.names("loss")))
            hints = [*did_you_mean(name, known)]
            if ("loss", name) in KNOWN_PROVIDERS:
                hints.append(provider_hint("loss", name, KNOWN_PROVIDERS[("loss", name)]))
            hints.append(f"losses available here: {', '.join(known) if known else '(none)'}")
            issues.append(ctx.issue(path, "not a registered loss nor an auxiliary loss of a component in this spec",
                                    hints, key=True))
        elif ls.params:
            issues.append(ctx.issue(path + ("params",), f"{name!r} is returned by a component; set its options in "
                                    "that component's params", key=True))
    return issues
