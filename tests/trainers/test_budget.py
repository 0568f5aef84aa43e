"""A time budget: the schedule follows training time, the run stops when it is spent, a resumed
run continues from the time recorded, and with train_steps too whichever ends first ends it.

Nothing here is timed: the training clock is replaced by a fake one on which every optimizer step
takes exactly one second (`step_clock`), so each assertion is exact on any machine.
"""

from __future__ import annotations

import logging
import re
import signal

import pytest
import tensorflow as tf

from common.progress import parse_duration
from common.rundir import RunDir
from tests.trainers.conftest import one_device, tiny_config
from trainers import checkpoints, loop, schedule
from trainers.config import Config, ConfigError, resolve
from trainers.train import create_state, train_and_evaluate


@pytest.fixture
def step_clock(monkeypatch):
    """A fake `schedule.now`: it reads 1000 + the number of clock readings so far. The training
    function reads it once when a call starts and once after each step, so training time is
    exactly one second per step, whatever the machine and however steps are split into calls."""
    readings = tf.Variable(1000.0, dtype=tf.float64, trainable=False)

    def now():
        readings.assign_add(1.0)
        return readings.read_value()

    monkeypatch.setattr(schedule, "now", now)
    return readings


@pytest.mark.parametrize(
    "text, seconds", [("90s", 90), ("5m", 300), ("2h", 7200), ("1h30m", 5400), ("1m30s", 90), ("45", 45), ("2.5m", 150), ("", 0)]
)
def test_durations_read_as_a_user_writes_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "m5", "-3s", "five minutes", "inf"])
def test_a_bad_time_budget_is_one_sentence_naming_the_field(text):
    config = tiny_config("mnist_mlp", time_budget=text)
    with pytest.raises(ConfigError, match=r"config.train.time_budget: .* write e.g. 90s, 5m, 2h"):
        resolve(config)


def _learning_rate(budget: float, seconds: float, step: int, **train) -> float:
    config = resolve(tiny_config("mnist_mlp", learning_rate=1.0, **train)).train
    clock = schedule.Clock(budget)
    clock.seconds.assign(seconds)
    return float(schedule.make_schedule(config, clock)(step))


def test_with_a_budget_the_learning_rate_follows_time_not_steps():
    trapezoid = dict(schedule="trapezoid", warmup_fraction=0.1, decay_fraction=0.5, train_steps=10_000)
    # The same step 7 anywhere in the schedule: only the seconds spent decide.
    assert _learning_rate(100, 5, 7, **trapezoid) == pytest.approx(0.5)  # halfway through warmup
    assert _learning_rate(100, 30, 7, **trapezoid) == pytest.approx(1.0)  # at the peak
    assert _learning_rate(100, 75, 7, **trapezoid) == pytest.approx(0.5)  # halfway down the decay
    assert _learning_rate(100, 100, 7, **trapezoid) == pytest.approx(0.0)
    cosine = dict(schedule="cosine", warmup_fraction=0.2, train_steps=10_000)
    assert _learning_rate(100, 60, 7, **cosine) == pytest.approx(0.5)  # halfway through the cosine
    # Both limits: the one further along decides (step 9,000 of 10,000 beats 10 s of 100 s).
    assert _learning_rate(100, 10, 9_000, **trapezoid) == pytest.approx(0.2)


def test_without_a_budget_the_schedule_is_the_step_cosine_it_always_was():
    config = resolve(tiny_config("mnist_mlp", learning_rate=1e-3, train_steps=200, warmup_steps=20)).train
    ours = schedule.make_schedule(config)
    keras_cosine = tf.keras.optimizers.schedules.CosineDecay(0.0, 180, warmup_target=1e-3, warmup_steps=20)
    for step in (0, 1, 10, 20, 21, 100, 199, 200):
        assert float(ours(step)) == pytest.approx(float(keras_cosine(step)), rel=1e-5, abs=1e-9)


def _run(tmp_path, name: str, **train) -> tuple[dict, str]:
    config = tiny_config("mnist_mlp", checkpoint_every=0, eval_every=0, steps_per_loop=5, **train)
    return train_and_evaluate(config, str(tmp_path / name), strategy=one_device()), str(tmp_path / name)


def test_training_stops_when_the_budget_is_spent_and_writes_a_complete_run(tmp_path, step_clock, caplog):
    caplog.set_level(logging.INFO)
    metrics, run_dir = _run(tmp_path, "run", time_budget="12s", train_steps=1000)
    assert metrics["step"] == 12 and metrics["training_seconds"] == 12.0
    assert metrics["examples_seen"] == 12 * 8 and metrics["wall_seconds"] > 0
    assert "time budget 12.0s spent at step 12, before train_steps=1000" in caplog.text
    assert tf.train.latest_checkpoint(f"{run_dir}/checkpoints").endswith("ckpt-12")  # mid-call: saved all the same
    # The learning rate followed the clock to zero, although step 12 of 1000 is 1% of the steps.
    lrs = [float(x) for x in re.findall(r"lr=(\S+)", caplog.text)]
    assert lrs[-1] == pytest.approx(0.0, abs=1e-6) and "schedule 100% (decay)" in caplog.text
    assert "left" in caplog.text


def test_train_steps_still_ends_a_run_first_and_the_log_says_so(tmp_path, step_clock, caplog):
    caplog.set_level(logging.INFO)
    metrics, _ = _run(tmp_path, "run", time_budget="1h", train_steps=10)
    assert metrics["step"] == 10 and metrics["training_seconds"] == 10.0
    assert "train_steps=10 reached with 59m50s of 1h00m left" in caplog.text


def test_a_resumed_run_continues_the_schedule_from_the_time_it_recorded(tmp_path, step_clock, monkeypatch, caplog):
    """Preempted after 5 s of a 20 s budget, then resumed on a clock reading something else
    entirely: the same steps, learning rates and weights as one uninterrupted run."""

    class PreemptedInSecondCall(loop.Preemption):
        def call(self, fn, *args):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 2:  # as a SIGTERM during the first call does
                self.signal = signal.SIGTERM
                self.stop.assign(True)
            return super().call(fn, *args)

    budget = dict(time_budget="20s", train_steps=1000, schedule="trapezoid", warmup_fraction=0.25, decay_fraction=0.5)
    whole, _ = _run(tmp_path, "whole", **budget)
    with monkeypatch.context() as patch:
        patch.setattr(loop, "Preemption", PreemptedInSecondCall)
        with pytest.raises(loop.Preempted, match="stopped at step 5"):
            _run(tmp_path, "split", **budget)
    step_clock.assign(5e8)  # another machine's time: the run must not re-measure from it
    caplog.set_level(logging.INFO)
    resumed, _ = _run(tmp_path, "split", **budget)
    assert "at step 5" in caplog.text and "training for 20.0s or 1000 steps, whichever ends first (15.0s of 20.0s left)" in caplog.text
    assert resumed["step"] == whole["step"] == 20 and resumed["training_seconds"] == whole["training_seconds"] == 20.0
    assert resumed["loss"] == pytest.approx(whole["loss"], rel=1e-5)


def test_an_old_checkpoint_without_a_recorded_time_resumes_counting_from_zero(tmp_path, step_clock, caplog):
    _, run_dir = _run(tmp_path, "run", train_steps=5)
    run = RunDir(run_dir)
    path = checkpoints.checkpoint_paths(run)[-1]
    state = create_state(Config.from_json(run.read_config()), one_device(), run)
    state.checkpoint.restore(path).assert_existing_objects_matched()
    # As a version that did not record training time wrote it: the same manager, without the clock.
    tf.train.CheckpointManager(state.checkpoint_without_clock, run.checkpoints_dir, max_to_keep=3).save(checkpoint_number=5)
    assert not tf.train.load_checkpoint(path).has_tensor("training_seconds/.ATTRIBUTES/VARIABLE_VALUE")
    caplog.set_level(logging.INFO)
    resumed, _ = _run(tmp_path, "run", train_steps=8)
    assert "does not record its training time" in caplog.text and "resumed from" in caplog.text
    assert resumed["step"] == 8 and resumed["training_seconds"] == 3.0


@pytest.mark.parametrize("name", ["bert_tiny", "bert_mini", "bert_small", "gpt_tiny", "gpt_mini"])
def test_the_sizes_a_user_starts_with_pretrain_for_a_budget_and_fine_tuning_them_counts_steps(name):
    from trainers.config import defaults

    pretraining = resolve(defaults(name)).train
    assert parse_duration(pretraining.time_budget) == 240 and pretraining.train_steps >= 10**6  # the budget ends the Quickstart
    if name.startswith("bert"):
        fine_tuning = resolve(defaults(name, "classify")).train
        assert (fine_tuning.time_budget, fine_tuning.train_steps) == ("", 200)  # a recipe counts epochs, not minutes


def test_larger_sizes_train_by_steps():
    from trainers.config import defaults

    assert all(defaults(name).train.time_budget == "" for name in ("bert_base", "gpt_small", "llama_tiny"))


@pytest.mark.parametrize(
    "argv, budget",
    [
        (["--model=bert_small"], "4m"),  # the Quickstart: the default budget
        (["--model=bert_small", "--train_steps=20000"], ""),  # "pretrain for real": 20,000 steps, not 4 minutes
        (["--model=bert_small", "--train_steps", "20000"], ""),
        (["--model=bert_small", "--config.train.train_steps=20000"], ""),
        (["--model=bert_small", "--train_steps=20000", "--time_budget=2h"], "2h"),  # both given: whichever ends first
        (["--model=bert_small", "--time_budget=90s"], "90s"),
    ],
)
def test_steps_given_alone_replace_the_default_budget(argv, budget):
    from trainers.config import defaults, steps_replace_default_budget

    config = defaults("bert_small")
    for arg in argv:  # what absl and apply_shortcuts set from these flags
        if arg.startswith("--time_budget="):
            config.train.time_budget = arg.partition("=")[2]
    assert steps_replace_default_budget(config, argv).train.time_budget == budget
