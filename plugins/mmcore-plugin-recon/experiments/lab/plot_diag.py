"""Plot of the reconstruction diagnostics (torch-free): SmoothL1 of masked tokens vs masking rate, per modality.

Reads ``SWEEP/recon_diagnostics.json`` written by ``diagnose.py`` and draws, for audio and vision, the read-out
W_r X̂ of ``recon`` (α = 1) against the references that need no model: train mean, the last observed token
(copy-the-neighbour), the last observed token of the same word (causal) and the mean of the same word's observed
tokens (both sides). Mean over seeds.

    .venv-test/bin/python plugins/mmcore-plugin-recon/experiments/lab/plot_diag.py /tmp/lab/runs/mgmr_main docs/lab/mgmr/mgmr_recon_error.png
"""

from __future__ import annotations

import json
import os
import sys

from mmcore.plots._mpl import new_figure, save  # Agg canvas, no pyplot

REFS = (("recon", "W_r X̂ (recon, α = 1)", "-"), ("mean", "train mean", ":"), ("last", "last observed token", ":"),
        ("word_causal", "same word, causal copy", "--"), ("word", "same word, both sides", "--"))


def main(sweep: str, png: str) -> None:
    rows = [r for r in json.load(open(os.path.join(sweep, "recon_diagnostics.json"))) if r["variant"] == "recon"]
    rates = sorted({r["rate"] for r in rows})
    fig = new_figure(9.0, 3.8)
    for i, m in enumerate(("audio", "vision")):
        ax = fig.add_subplot(1, 2, i + 1)
        for key, label, style in REFS:
            ys = [sum(r[m][key] for r in rows if r["rate"] == q) / sum(r["rate"] == q for r in rows) for q in rates]
            ax.plot(rates, ys, style, marker="o", label=label)
        ax.set_xticks(rates)
        ax.set_xlabel("masking rate r (train = test)")
        ax.set_ylabel("SmoothL1 per element, masked tokens")
        ax.set_title(f"{m}: reconstruction of masked frames")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize="small")
    print(save(fig, png))


if __name__ == "__main__":
    main(*sys.argv[1:3])
