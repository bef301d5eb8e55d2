"""Alignment accuracy against ground truth (mmcore.alignment), on hand-made plans with known answers."""

import pytest
import torch

from conftest import run_cli
from mmcore.alignment import AlignmentUnavailable, aggregate, evaluate_alignment, plan_scores, proportional_plan


def _one(plan, wa, wm, va=None, vm=None):
    wa, wm = torch.tensor([wa]), torch.tensor([wm])
    va = torch.ones_like(wa, dtype=torch.bool) if va is None else torch.tensor([va])
    vm = torch.ones_like(wm, dtype=torch.bool) if vm is None else torch.tensor([vm])
    return plan_scores(torch.tensor([plan], dtype=torch.float64), wa, wm, va, vm)


def test_hand_example():
    """Two words, four frames, frame 0 is noise (-1).

    Row 0 = [.5, .5, 0, 0]: argmax (first of a tie) is frame 0, outside word 0's span {1}: miss; mass .5.
    Row 1 = [0, 0, .2, .8]: argmax frame 3 in {2, 3}: hit; mass 1. -> top1 .5, mass .75 (sums 1, 1.5).
    Uniform: |S| / T_m = 1/4 and 2/4. Proportional: word 0 -> [0, 2) (frames 0, 1; centre frame 1: hit;
    mass 1/2), word 1 -> [2, 4) (centre frame 3: hit; mass 1).
    """
    s = _one([[0.5, 0.5, 0, 0], [0, 0, 0.2, 0.8]], [0, 1], [-1, 0, 1, 1])
    assert s["tokens"] == 2
    assert s["top1"] == pytest.approx(1.0) and s["mass"] == pytest.approx(1.5)
    assert s["uniform_top1"] == pytest.approx(0.75) and s["uniform_mass"] == pytest.approx(0.75)
    assert s["proportional_top1"] == pytest.approx(2.0) and s["proportional_mass"] == pytest.approx(1.5)


def test_perfect_plan_scores_one_and_padding_is_ignored():
    """Mass on a padded frame counts for nothing; an anchor token whose word has no frame is not scored."""
    plan = [[0, 1.0, 0, 5.0], [0, 0, 1.0, 5.0], [0.3, 0.3, 0.4, 0.0]]
    s = _one(plan, [0, 1, 2], [0, 0, 1, 2], vm=[True, True, True, False])
    assert s["tokens"] == 2  # word 2's only frame is padding
    assert s["top1"] == 2.0 and s["mass"] == 2.0


def test_anchor_padding_and_noise_tokens_are_not_scored():
    s = _one([[1.0, 0], [1.0, 0], [0, 1.0]], [0, -1, 1], [0, 1], va=[True, True, False])
    assert s["tokens"] == 1 and s["top1"] == 1.0


def test_proportional_plan_overlaps():
    """T_a = 2, T_m = 3: token 0 covers [0, 1.5) -> frames 0 (1) and 1 (0.5); rows sum to 1/T_a."""
    Q = proportional_plan(torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 3, dtype=torch.bool))[0]
    assert torch.allclose(Q, torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]], dtype=torch.float64) / 3)
    Q = proportional_plan(torch.tensor([[True, True, False]]), torch.tensor([[True, True, True, True, False]]))[0]
    assert torch.allclose(Q.sum(1), torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))
    assert Q[:, 4].abs().sum() == 0


def test_aggregate_is_micro_per_modality_and_macro_over_modalities():
    sums = {"audio": {"top1": 3.0, "mass": 2.0, "uniform_top1": 1.0, "uniform_mass": 1.0, "proportional_top1": 2.0,
                      "proportional_mass": 1.5, "tokens": 4},
            "vision": {"top1": 1.0, "mass": 1.0, "uniform_top1": 0.5, "uniform_mass": 0.5, "proportional_top1": 1.0,
                       "proportional_mass": 1.0, "tokens": 1}}
    out = aggregate(sums)
    assert out["audio"]["top1"] == 0.75 and out["vision"]["top1"] == 1.0
    assert out["mean"]["top1"] == pytest.approx(0.875)


class _Data:
    """A tiny dataset with ground truth: 3 rows, text anchor (4 words) and audio (6 frames)."""

    def __init__(self, truth=True):
        from mmcore.data.base import DatasetInfo, Split

        g = torch.Generator().manual_seed(0)
        self.words = {"text": torch.tensor([[0, 1, 2, 3]] * 3),
                      "audio": torch.tensor([[0, 0, 1, 2, 3, 3], [-1, 0, 1, 1, 2, 3], [0, 1, 2, 3, -1, -1]])}
        valid = {"text": torch.ones(3, 4, dtype=torch.bool),
                 "audio": torch.tensor([[True] * 6, [True] * 6, [True] * 4 + [False] * 2])}
        self.splits = {"test": Split(features={m: torch.randn(3, v.shape[1], 2, generator=g) for m, v in valid.items()},
                                     valid=valid, missing={m: torch.zeros(3, dtype=torch.bool) for m in valid},
                                     labels=torch.zeros(3))}
        self.info = DatasetInfo(name="tiny")
        self._truth = truth

    def split(self, name):
        return self.splits[name]

    def alignment_truth(self, split):
        return self.words if self._truth else None


class _OracleAligner:
    """Plans built from the truth: each text token's mass spread over its true frames."""

    anchor = "text"

    def __init__(self, words):
        self.words, self.last = words, None

    def alignment_plans(self):
        return self.last


class _Model:
    def __init__(self, aligner):
        self.aligner = aligner

    def eval(self):
        return self

    def __call__(self, batch):
        wa, wm = self.aligner.words["text"][batch.index], self.aligner.words["audio"][batch.index]
        match = ((wa.unsqueeze(-1) == wm.unsqueeze(1)) & batch.valid["audio"].unsqueeze(1)).double()
        self.aligner.last = {"audio": match / match.sum(-1, keepdim=True).clamp_min(1)}


def test_evaluate_alignment_on_an_oracle_gives_one_and_the_floors_below():
    data = _Data()
    res = evaluate_alignment(_Model(_OracleAligner(data.words)), data, "test", batch_size=2)
    a = res["audio"]
    assert res["anchor"] == "text" and a["tokens"] == 12
    assert a["top1"] == 1.0 and a["mass"] == 1.0
    assert a["uniform_top1"] < 0.5 and res["mean"]["top1"] == 1.0


def test_no_ground_truth_and_no_plans_say_why():
    with pytest.raises(AlignmentUnavailable, match="no ground-truth alignment"):
        evaluate_alignment(_Model(_OracleAligner({})), _Data(truth=False), "test")

    class NoPlans:
        pass

    with pytest.raises(AlignmentUnavailable, match="exposes no alignment plans"):
        evaluate_alignment(_Model(NoPlans()), _Data(), "test")


def _tiny_run(tmp_path, aligner):
    from mmcore.spec import spec_from_dict
    from mmcore.train.run import train_run

    spec = {"seed": 0, "modalities": {"text": {}, "audio": {}}, "model": {"d_model": 8, "dropout": 0.0},
            "encoders": {"default": {"name": "linear"}}, "aligner": aligner, "fuser": {"name": "concat_pool"},
            "head": {"name": "regression_mlp"}, "train": {"epochs": 1, "batch_size": 16},
            "data": {"name": "synthetic", "params": {"n_train": 32, "n_valid": 16, "n_test": 16, "misalignment": 1.0}}}
    run = str(tmp_path / "run")
    return run, train_run(spec_from_dict(spec), run, progress=False)


def test_eval_alignment_on_an_aligner_without_plans_says_why(tmp_path, capsys, builtins_only):


    run, res = _tiny_run(tmp_path, {"name": "identity"})
    assert "alignment" not in res  # nothing to score: results.json stays as before
    code, out, err = run_cli(["eval", run, "--alignment"], capsys)
    assert code == 2 and "exposes no alignment plans" in err and "Traceback" not in err
