"""Spec problems carry positions as objects; each validation rule lives in one function.

Positions sort by (line, column) as numbers, never as text. A rule that both spec validation and a
programmatic path check (select_metric, missing-modality ops, the install hint, the error shape)
gives the same message on both paths, because both call the same function.
"""

from types import SimpleNamespace

import pytest

from mmcore.errors import MmcoreUserError, Position, SpecError, SpecIssue, format_error
from mmcore.metrics import METRIC_MODES, metric_names, select_metric_problem, task_metrics
from mmcore.missing import MissingOp, MissingProtocol
from mmcore.registry import install_hint, provider_hint
from mmcore.spec import spec_from_dict
from mmcore.spec.yaml_source import parse_yaml
from mmcore.spec.validate import sorted_issues, validate_data
from mmcore.sweep.grid import SweepError
from mmcore.sweep.run import _check_args
from mmcore.train.trainer import Trainer


def _spec(**over) -> dict:
    spec = {"modalities": {"text": {"dim": 4}, "audio": {"dim": 3}}, "encoders": {"default": {"name": "linear"}},
            "fuser": {"name": "mean"}, "head": {"name": "regression_mlp"}}
    spec.update(over)
    return spec


def _issues(spec: dict) -> list[SpecIssue]:
    with pytest.raises(SpecError) as e:
        spec_from_dict(spec)
    return e.value.issues


# ---------------------------------------------------------------- positions

def test_positions_order_by_line_then_column_as_numbers():
    a, b, c, d = Position("s.yaml", 9, 30), Position("s.yaml", 10, 1), Position("s.yaml", 10, 2), Position("s.yaml", 10, 12)
    assert sorted([d, c, b, a]) == [a, b, c, d]  # as text, "10:12" < "10:2" and "10" < "9"
    assert Position("command line (--set x=1)") > Position("s.yaml", 10_000, 99_999)  # no line: last
    assert str(d) == "s.yaml:10:12" and str(Position("command line")) == "command line"


def test_issues_carry_position_objects_and_the_same_text(builtins_only):
    # the select_metric rule runs before the losses rule: the order below is the sort's doing
    text = "\n".join(["modalities:", "  text: {dim: 4}", "encoders: {default: {name: linear}}", "fuser: {name: mean}",
                      "head: {name: regression_mlp}", "#", "#", "#", "losses: {nope: {weight: 1.0}}",
                      "train: {select_metric: maee}"]) + "\n"
    with pytest.raises(SpecError) as e:
        validate_data(parse_yaml(text, "s.yaml"))
    issues = e.value.issues
    assert [(i.path, i.position.line, i.position.col) for i in issues] == [
        ("losses.nope", 9, 10), ("train.select_metric", 10, 24)]  # line 9 before 10 (as text, "10:24" < "9:10")
    assert all(isinstance(i.position, Position) for i in issues)
    assert issues[1].where == "s.yaml:10:24"
    assert issues[1].format().startswith("s.yaml:10:24: error: train.select_metric: unknown metric 'maee'\n  did you")
    assert str(e.value) == "\n".join(i.format() for i in issues)


def test_validation_sorts_issues_by_line_then_column_numerically():
    at = [Position("command line (--set a=1)"), Position("s.yaml", 10, 12), Position("s.yaml", 10, 2),
          Position("s.yaml", 9, 40)]
    issues = [SpecIssue(p, f"p{k}", "bad") for k, p in enumerate(at)]
    assert [str(i.position) for i in sorted_issues(issues)] == [
        "s.yaml:9:40", "s.yaml:10:2", "s.yaml:10:12", "command line (--set a=1)"]


def test_a_spec_issue_accepts_text_for_origins_without_a_line():
    issue = SpecIssue("command line", "train.lr", "bad", ("hint one",))
    assert issue.position == Position("command line") and issue.where == "command line"
    assert issue.format() == "command line: error: train.lr: bad\n  hint one"


# ---------------------------------------------------------------- select_metric: one rule, two entry points

def _trainer_check(metric: str, metric_set: str, rs) -> str:
    """Run the trainer's own check (Trainer._check_metric) against a dataset of ``metric_set``."""
    fake = SimpleNamespace(metric=metric, data=SimpleNamespace(info=SimpleNamespace(metric_set=metric_set)), rs=rs)
    with pytest.raises(SpecError) as e:
        Trainer._check_metric(fake)
    return str(e.value)


def test_unknown_select_metric_reads_the_same_from_validation_and_the_trainer(builtins_only):
    [issue] = _issues(_spec(train={"select_metric": "maee"}))
    from_spec = issue.format()
    from_trainer = _trainer_check("maee", "mosi", spec_from_dict(_spec()))
    assert from_spec == from_trainer == format_error(Position("<dict>", 1, 1), "unknown metric 'maee'",
                                                     ("did you mean 'mae'?", f"metrics: {', '.join(METRIC_MODES)}"),
                                                     "train.select_metric")


def test_select_metric_not_produced_here_is_one_rule_for_task_and_metric_set(builtins_only):
    # the synthetic data declares regression: classification metrics are refused at validation ...
    [issue] = _issues(_spec(train={"select_metric": "acc"}))
    assert issue.message == "'acc' is not computed for regression (the data's task)"
    assert issue.hints == (f"regression metrics: {', '.join(sorted(task_metrics('regression')))}",)
    # ... while a SIMS metric passes validation (some regression data has it) and the trainer, knowing the
    # loaded data's metric set, refuses it with the same rule and wording
    rs = spec_from_dict(_spec(train={"select_metric": "acc3"}))
    text = _trainer_check("acc3", "mosi", rs)
    assert text == format_error(Position("<dict>", 1, 1), "'acc3' is not computed for mosi (the dataset's metric set)",
                                (f"mosi metrics: {', '.join(sorted(metric_names('mosi')))}",), "train.select_metric")


def test_task_metrics_are_read_from_the_metric_functions():
    assert task_metrics("regression") == {"loss", "mae", "mse", "corr", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0",
                                          "acc5", "acc7", "acc2", "acc3", "f1"}
    assert task_metrics("classification") == {"loss", "acc", "weighted_acc", "f1_weighted"}
    assert set().union(*map(task_metrics, ("regression", "classification"))) == set(METRIC_MODES)
    with pytest.raises(ValueError, match="unknown metric_set 'ner'"):
        metric_names("ner")


def test_sweep_metric_uses_the_same_rule():
    with pytest.raises(SweepError) as e:
        _check_args(seeds=1, jobs=1, metric="maee")
    assert str(e.value) == format_error("command line (--metric maee)", *select_metric_problem("maee"))


# ---------------------------------------------------------------- missing-modality ops: one rule, two entry points

@pytest.mark.parametrize("op", [
    {"type": "temporal", "rate": 1.0},
    {"type": "victim", "rate": 0.5},
    {"type": "temporal", "rate": 0.5, "modality": "text"},
    {"type": "victim", "rate": 0.5, "modality": "text", "modalities": ["audio"]},
])
def test_missing_op_rules_read_the_same_from_validation_and_the_protocol(builtins_only, op):
    [issue] = _issues(_spec(missing={"train": [op]}))
    assert issue.path == "missing.train[0]"
    with pytest.raises(ValueError) as e:
        MissingProtocol([MissingOp(**op)])
    assert str(e.value) == issue.message


def test_missing_op_rate_range_outside_a_spec():
    with pytest.raises(ValueError, match=r"^instance rate must be in \[0, 1\]; got 1.5$"):
        MissingProtocol([MissingOp("instance", 1.5)])
    with pytest.raises(ValueError, match="missing op type must be one of"):
        MissingProtocol([MissingOp("dropout", 0.5)])
    assert MissingProtocol([MissingOp("temporal", 0.5, modalities=[])]).ops[0].modalities == []


# ---------------------------------------------------------------- one install-hint sentence

def test_one_install_hint_sentence_for_components_and_losses(builtins_only):
    issues = _issues(_spec(aligner={"name": "sinkhorn"}, losses={"mmd": {"weight": 1.0}}))
    hints = {i.path: i.hints for i in issues}
    assert provider_hint("aligner", "sinkhorn", "mmcore-plugin-ot") in hints["aligner.name"]
    assert provider_hint("loss", "mmd", "mmcore-plugin-ot") in hints["losses.mmd"]
    assert provider_hint("loss", "mmd", "mmcore-plugin-ot").startswith(
        f"hint: loss 'mmd' comes from mmcore-plugin-ot, which is not installed; run: {install_hint('mmcore-plugin-ot')}")
    [typo] = [h for h in _issues(_spec(aligner={"name": "relaxd_ot"}))[0].hints if "comes from" in h]
    assert typo == provider_hint("aligner", "relaxed_ot", "mmcore-plugin-ot", guessed=True)
    assert typo.startswith("did you mean 'relaxed_ot'? it comes from mmcore-plugin-ot, which is not installed; run: ")


def test_install_hint_sentence_variants():
    assert provider_hint("aligner", ["a", "b"], "d", failed="error: x") == \
        "hint: aligners 'a', 'b' come from d, which is installed but failed to load: error: x"
    assert provider_hint("aligner", "a", "d", failed="error: x") == \
        "hint: aligner 'a' comes from d, which is installed but failed to load: error: x"


# ---------------------------------------------------------------- one error shape

def test_user_errors_share_the_spec_issue_shape():
    issue = SpecIssue(Position("s.yaml", 3, 4), "a.b", "bad", ("h1", "h2"))
    err = MmcoreUserError.at(Position("s.yaml", 3, 4), "a.b: bad", ("h1", "h2"))
    assert str(err) == issue.format() == "s.yaml:3:4: error: a.b: bad\n  h1\n  h2"
    with pytest.raises(SweepError) as e:
        _check_args(seeds=0, jobs=1, metric=None)
    assert str(e.value) == "command line (--seeds 0): error: need at least one seed"
