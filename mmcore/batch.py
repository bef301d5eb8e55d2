"""The batch that flows through a pipeline: per-modality tensors and their masks."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


@dataclass
class Batch:
    """One mini-batch of multimodal sequences.

    Shapes (per modality ``m``):
        features[m]  (B, T_m, d_m) float — the inputs the model sees (after any masking).
        valid[m]     (B, T_m) bool — True = real token. Valid tokens form a **prefix** of each row
                     (padding at the end) and every row has at least one valid token.
        missing[m]   (B,) bool — True = the whole modality is absent for that instance; its
                     features are zeros and ``valid`` still gives the positions to impute.
        masked[m]    (B, T_m) bool — True = token removed by temporal masking (features zeroed).
        clean[m]     (B, T_m, d_m) — the features before the missing-modality protocol (targets
                     for reconstruction losses; equal to ``features`` when nothing was masked).
        labels       (B,) float (regression) or long (classification).
        index        (B,) long — row numbers in the split (for reports and plots).
    """

    features: dict[str, Tensor]
    valid: dict[str, Tensor]
    labels: Tensor
    missing: dict[str, Tensor] = field(default_factory=dict)
    masked: dict[str, Tensor] = field(default_factory=dict)
    clean: dict[str, Tensor] = field(default_factory=dict)
    index: Tensor | None = None

    def __post_init__(self) -> None:
        for m, x in self.features.items():
            B, T = x.shape[:2]
            self.missing.setdefault(m, torch.zeros(B, dtype=torch.bool, device=x.device))
            self.masked.setdefault(m, torch.zeros(B, T, dtype=torch.bool, device=x.device))
            self.clean.setdefault(m, x)

    @property
    def modalities(self) -> list[str]:
        return list(self.features)

    @property
    def batch_size(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        mv = lambda d: {k: v.to(device, non_blocking=non_blocking) for k, v in d.items()}  # noqa: E731
        clean = {k: (None if v is self.features[k] else v) for k, v in self.clean.items()}
        features = mv(self.features)
        out = Batch(features=features, valid=mv(self.valid), labels=self.labels.to(device, non_blocking=non_blocking),
                    missing=mv(self.missing), masked=mv(self.masked),
                    clean={k: (features[k] if v is None else v.to(device, non_blocking=non_blocking))
                           for k, v in clean.items()},
                    index=None if self.index is None else self.index.to(device))
        return out

    def select(self, idx: Tensor) -> "Batch":
        """The rows ``idx`` (a long tensor) of every field, as a new batch."""
        pick = lambda d: {m: v[idx] for m, v in d.items()}  # noqa: E731
        return Batch(features=pick(self.features), valid=pick(self.valid), labels=self.labels[idx],
                     missing=pick(self.missing), masked=pick(self.masked), clean=pick(self.clean),
                     index=None if self.index is None else self.index[idx])

    def replace(self, **changes) -> "Batch":
        return replace(self, **changes)

    def check(self) -> None:
        """Raise ``ValueError`` naming the modality and the expected vs actual shape if inconsistent."""
        B = self.batch_size
        for m, x in self.features.items():
            if x.dim() != 3 or x.shape[0] != B:
                raise ValueError(f"features[{m!r}] must be (B={B}, T, d); got {tuple(x.shape)}")
            T = x.shape[1]
            for name, d, shape in (("valid", self.valid, (B, T)), ("masked", self.masked, (B, T)),
                                   ("missing", self.missing, (B,))):
                if m not in d or tuple(d[m].shape) != shape or d[m].dtype != torch.bool:
                    got = "absent" if m not in d else f"{tuple(d[m].shape)} {d[m].dtype}"
                    raise ValueError(f"{name}[{m!r}] must be a bool tensor of shape {shape}; got {got}")
