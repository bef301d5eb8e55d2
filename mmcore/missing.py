r"""Missing-modality protocols: temporal masking, instance dropping, a victim modality.

Every random decision is a pure function of ``(seed, epoch, split, op, modality, row, position)``
through a counter-based hash, never of a generator's state, so batch size, batch order, the
number of processes and resuming change nothing: a distributed run, a resumed run and a
single-process run mask exactly the same tokens. Training draws new masks every epoch;
evaluation (``epoch=None``) uses one fixed draw per split.

The uniform variable of one decision is

$$u = \big\lfloor h\big(h(k_{op,m} \oplus r) \oplus t\big) / 2^{8} \big\rfloor / 2^{24}, \qquad
k_{op,m} = h(h(h(h(h(s_{lo}) \oplus s_{hi}) \oplus c(\text{split})) \oplus e) \oplus c(op\_index{:}type)) \oplus c(m)$$

where h is the 32-bit ``lowbias32`` integer mixer (Wellons 2018; multiplications split into
16-bit halves so every step stays exact in int64 on any device), c a string's CRC-32, s the seed,
e = 0 for evaluation and epoch + 1 in training, r = ``batch.index`` (the row in its split) and
t the position (0 for per-row decisions). A token/row is hit when u < rate.

Ops (list order is irrelevant; dropping ops run before temporal masking):

* ``instance``: each listed modality (default: all of the batch's) of each row is dropped with
  probability ``rate``. ``keep_one``: if a row would be left with no present modality, the
  dropped modality with the largest u (the "least dropped") is restored, so the effective rate
  is slightly below ``rate`` (by rate^M/M for M modalities and keep_one).
* ``victim``: ``modality`` is dropped per row with probability ``rate`` (MM-Align: rate p' in
  training; at evaluation 1.0 in its setting A, p' in its setting B). No keep_one.
* ``temporal``: each still-observed token (valid, row present, not already masked) is masked
  with probability ``rate`` < 1. If that would mask every such token of a row, the one with the
  largest u stays unmasked: a present row always keeps at least one observed token.

Masked tokens and dropped rows are zeroed in ``features``; ``masked``/``missing`` are OR-ed with
what the batch had; ``clean`` keeps the original features (targets for reconstruction).
``mask_with[m] = "unk"`` (default for text) keeps the zeros here and tells the encoder to put
its learned unknown-token vector at ``masked`` positions (the model owns that vector).

Reference: MM-Align (Han et al., EMNLP 2022), settings A/B; MGMR-Net temporal masking.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from .batch import Batch
from .spec.models import missing_op_problem, named_modalities

__all__ = ["MissingOp", "MissingProtocol", "uniform_hash", "sweep_rates", "format_rate_table"]

logger = logging.getLogger(__name__)

_M32 = 0xFFFFFFFF


@dataclass(frozen=True)
class MissingOp:
    """One operation; the spec's ``MissingOpSpec`` has the same attributes."""

    type: str
    rate: float
    modalities: list[str] | None = None
    keep_one: bool = True
    modality: str | None = None


def _mul32(x: Tensor, c: int) -> Tensor:
    """(x·c) mod 2^32 for 0 <= x < 2^32, exact in int64 (products stay below 2^48)."""
    lo, hi = x & 0xFFFF, x >> 16
    return ((lo * c) + (((hi * c) & 0xFFFF) << 16)) & _M32


def _mix(x: Tensor) -> Tensor:
    """lowbias32 integer hash on int64 tensors holding uint32 values."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _mix_int(x: int) -> int:
    """:func:`_mix` on a Python int (same values; used for the per-call keys)."""
    x &= _M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def _code(s: str) -> int:
    return zlib.crc32(s.encode("utf-8")) & _M32


def _key(seed: int, epoch: int | None, split: str, *names: str) -> int:
    k = _mix_int(_mix_int(seed & _M32) ^ ((seed >> 32) & _M32))
    k = _mix_int(k ^ _code(split))
    k = _mix_int(k ^ (0 if epoch is None else (epoch + 1) & _M32))
    for n in names:
        k = _mix_int(k ^ _code(n))
    return k


def uniform_hash(key: int, rows: Tensor, positions: Tensor | None = None) -> Tensor:
    """Uniforms in [0, 1) as a pure function of (key, row[, position]).

    Shapes: rows (B,) long, positions (T,) long -> (B, T) float32; without positions -> (B,).
    The top 24 bits of the hash make the uniform, so it is exact in float32 on every device.
    """
    h = _mix((rows.to(torch.int64) & _M32) ^ key)  # (B,)
    if positions is not None:
        h = _mix(h[:, None] ^ positions.to(torch.int64)[None, :])  # (B, T)
    return (h >> 8).to(torch.float32) / float(1 << 24)


def _as_op(op: Any) -> MissingOp:
    """``op`` as a :class:`MissingOp`, checked by the same rules as the spec's missing ops."""
    mods = getattr(op, "modalities", None)
    out = MissingOp(type=getattr(op, "type", None), rate=float(getattr(op, "rate")),
                    modalities=None if mods is None else list(mods), keep_one=bool(getattr(op, "keep_one", True)),
                    modality=getattr(op, "modality", None))
    problem = missing_op_problem(out.type, out.rate, out.modalities, out.modality)
    if problem:
        raise ValueError(problem)
    return out


class MissingProtocol:
    """A list of missing-modality ops applied to batches, seeded and order-independent.

    Args: ops — objects with ``type``, ``rate``, ``modalities``, ``keep_one``, ``modality``;
    mask_with — modality -> "zero" | "unk" (what the model puts at masked tokens; default
    "unk" for text, "zero" otherwise).
    """

    def __init__(self, ops: Iterable[Any], mask_with: dict[str, str] | None = None):
        self.ops = [_as_op(op) for op in ops]
        self.mask_with = dict(mask_with or {})
        bad = {m: v for m, v in self.mask_with.items() if v not in ("zero", "unk")}
        if bad:
            raise ValueError(f"mask_with values must be 'zero' or 'unk'; got {bad}")

    def fill_for(self, modality: str) -> str:
        return self.mask_with.get(modality, "unk" if modality == "text" else "zero")

    @property
    def active(self) -> bool:
        return any(op.rate > 0 for op in self.ops)

    def with_rate(self, rate: float) -> "MissingProtocol":
        """The same protocol with every op's rate replaced by ``rate`` (for sweeps over rates)."""
        return MissingProtocol([dataclasses.replace(op, rate=float(rate)) for op in self.ops], self.mask_with)

    def describe(self) -> str:
        if not self.ops:
            return "none"
        parts = []
        for op in self.ops:
            if op.type == "victim":
                parts.append(f"victim({op.modality}, rate={op.rate:g})")
            else:
                mods = "all" if op.modalities is None else ",".join(op.modalities)
                extra = ", keep_one" if op.type == "instance" and op.keep_one else ""
                parts.append(f"{op.type}(rate={op.rate:g}, modalities={mods}{extra})")
        return "; ".join(parts)

    def __repr__(self) -> str:
        return f"MissingProtocol({self.describe()})"

    def _targets(self, op: MissingOp, names: list[str]) -> list[str]:
        want = names if op.type != "victim" and op.modalities is None else [n for _, n in named_modalities(op)]
        unknown = [m for m in want if m not in names]
        if unknown:
            raise ValueError(f"missing op {op.type} names modalities {unknown} that the batch lacks; "
                             f"batch modalities: {names}")
        return list(want)

    def apply(self, batch: Batch, *, seed: int, epoch: int | None, split: str) -> Batch:
        """A new batch with this protocol applied (the input is not modified; with no active op,
        i.e. every rate 0, the input batch itself is returned).

        Shapes: features[m] (B, T_m, d_m), valid/masked[m] (B, T_m), missing[m] (B,) — unchanged.
        Raises: ValueError if ``batch.index`` is None (row ids make masks order-independent).
        """
        if not self.active:
            return batch
        if batch.index is None:
            raise ValueError("MissingProtocol.apply needs batch.index (row numbers in the split) so masks do not "
                             "depend on batch order; build batches with Split.batch / iterate_batches")
        names = batch.modalities
        rows = batch.index.to(batch.valid[names[0]].device)
        missing = {m: batch.missing[m].clone() for m in names}
        for i, op in enumerate(self.ops):
            if op.type == "temporal" or op.rate <= 0:
                continue
            targets = self._targets(op, names)
            u = {m: uniform_hash(_key(seed, epoch, split, f"{i}:{op.type}", m), rows) for m in targets}
            drop = {m: u[m] < op.rate for m in targets}
            if op.type == "instance" and op.keep_one:
                self._keep_one(drop, u, missing, names)
            for m in targets:
                missing[m] |= drop[m]
        masked = {m: batch.masked[m].clone() for m in names}
        for i, op in enumerate(self.ops):
            if op.type != "temporal" or op.rate <= 0:
                continue
            for m in self._targets(op, names):
                valid = batch.valid[m] & ~missing[m][:, None] & ~masked[m]  # (B, T_m) still observed
                pos = torch.arange(valid.shape[1], device=valid.device)
                u = uniform_hash(_key(seed, epoch, split, f"{i}:{op.type}", m), rows, pos)  # (B, T_m)
                hit = (u < op.rate) & valid
                full = valid.any(1) & ((hit | ~valid).all(1))  # rows with every valid token hit
                if full.any():  # unmask the valid token with the largest u in those rows
                    keep = torch.where(valid, u, torch.full_like(u, -1.0)).argmax(1)  # (B,)
                    spare = torch.zeros_like(hit)
                    spare[torch.arange(hit.shape[0], device=hit.device), keep] = True
                    hit &= ~(spare & full[:, None])
                masked[m] |= hit
        features = {}
        for m in names:
            x = batch.features[m]
            zero = masked[m] | missing[m][:, None]  # (B, T_m)
            features[m] = torch.where(zero[..., None], torch.zeros((), dtype=x.dtype, device=x.device), x) \
                if bool(zero.any()) else x
        return Batch(features=features, valid=dict(batch.valid), labels=batch.labels, missing=missing,
                     masked=masked, clean=dict(batch.clean), index=batch.index)

    @staticmethod
    def _keep_one(drop: dict[str, Tensor], u: dict[str, Tensor], missing: dict[str, Tensor], names: list[str]) -> None:
        """Restore the dropped target with the largest u in rows that would lose every modality."""
        targets = list(drop)
        present_after = torch.stack([~missing[m] & ~drop.get(m, torch.zeros_like(missing[m])) for m in names]).any(0)
        cand = torch.stack([drop[m] & ~missing[m] for m in targets])  # (M_op, B) droppable and present
        lost = ~present_after & cand.any(0)  # (B,)
        if not lost.any():
            return
        score = torch.where(cand, torch.stack([u[m] for m in targets]), torch.full_like(cand, -1.0, dtype=torch.float32))
        best = score.argmax(0)  # (B,)
        for j, m in enumerate(targets):
            drop[m] = drop[m] & ~(lost & (best == j))


def sweep_rates(protocol: MissingProtocol, rates: Iterable[float],
                evaluate: Callable[[MissingProtocol], dict[str, float]]) -> list[dict[str, float]]:
    """Evaluate under ``protocol.with_rate(r)`` for each rate; one row ``{"rate": r, **metrics}`` each."""
    rows = []
    for r in rates:
        proto = protocol.with_rate(r)
        logger.info("evaluating with missing protocol %s", proto.describe())
        rows.append({"rate": float(r), **evaluate(proto)})
    return rows


def format_rate_table(rows: list[dict[str, float]], digits: int = 4) -> str:
    """A plain-text table of :func:`sweep_rates` rows (columns: rate then the metrics in order)."""
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[c for c in cols]] + [[f"{r.get(c, float('nan')):.{digits}f}" for c in cols] for r in rows]
    widths = [max(len(row[j]) for row in cells) for j in range(len(cols))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells)
