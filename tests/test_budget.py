"""Training to a time budget (train --minutes): the plan's arithmetic, the LR schedule refitted at the step
reached, the loop following the plan, and a real budget ending training well before the recipe's epochs."""

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from helpers import train_in_process, unetseg
from unetseg.budget import epoch_seconds, epochs_that_fit, recent_epoch_seconds
from unetseg.config import Recipe
from unetseg.distributed import World
from unetseg.training import EarlyStopper, TrainingState, fit_to_budget, make_scheduler


@given(budget=st.floats(1, 1e5), spent=st.floats(0, 2e5), done=st.integers(0, 50), epoch_s=st.floats(0.01, 1e4),
       most=st.integers(1, 100))
def test_the_plan_fits_the_budget_and_no_more(budget, spent, done, epoch_s, most):
    planned = epochs_that_fit(budget, spent, done, epoch_s, most)
    assert planned >= max(done, 1)  # what is done stays done, and there is always one epoch
    assert planned <= max(most, done)
    more = planned - max(done, 1)
    if more > 0:  # the epochs added end within the budget...
        assert spent + (planned - done) * epoch_s <= budget + 1e-6
    if planned < most:  # ...and one more would not
        assert spent + (planned - done + 1) * epoch_s > budget - 1e-6


def test_an_epoch_is_its_steps_and_a_third_of_a_step_per_validation_batch():
    assert epoch_seconds(0.5, steps=100, batch_size=16, n_val=48) == pytest.approx(0.5 * (100 + 1))
    assert recent_epoch_seconds([{"seconds": 100}, {"seconds": 10}, {"seconds": 20}]) == 15


def _state(recipe: Recipe, steps_per_epoch: int) -> TrainingState:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr)
    return TrainingState(model, opt, make_scheduler(opt, recipe, steps_per_epoch, "max"),
                         torch.amp.GradScaler(enabled=False), EarlyStopper(0, "max"), torch.Generator(),
                         epochs=recipe.epochs)


class _Ctx:  # the parts of training.Context that planning reads
    def __init__(self, recipe):
        self.recipe, self.world, self.per_batch, self.lines = recipe, World(), True, []
        self.log = self.lines.append


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_a_shorter_plan_refits_the_schedule_at_the_step_reached_and_ends_annealed(schedule):
    recipe = Recipe(epochs=10, lr=3e-3, schedule=schedule, minutes=1)
    steps = 5
    st_ = _state(recipe, steps)
    for _ in range(12):  # two epochs and two steps into the ten planned
        st_.opt.step()
        st_.sched.step()
    ctx = _Ctx(recipe)
    fit_to_budget(st_, ctx, steps, epoch_s=30.0, spent_s=15.0, done_epochs=2, done_steps=12)
    assert st_.epochs == 3 and ctx.lines == ["time budget 1 min: 3 of 10 epochs fit at ~0.5 min each (0.2 min spent)"]
    fresh = _state(Recipe(epochs=3, lr=3e-3, schedule=schedule), steps)  # planned for 3 epochs from the start
    for _ in range(12):
        fresh.opt.step()
        fresh.sched.step()
    assert st_.opt.param_groups[0]["lr"] == pytest.approx(fresh.opt.param_groups[0]["lr"])
    for state in (st_, fresh):  # the last steps of the third epoch
        for _ in range(3):
            state.opt.step()
            state.sched.step()
    assert st_.opt.param_groups[0]["lr"] == pytest.approx(fresh.opt.param_groups[0]["lr"])
    assert st_.opt.param_groups[0]["lr"] < 3e-3 * 0.03  # annealed: the plan's last step is the schedule's


def test_a_plan_that_ends_now_says_so_and_leaves_the_schedule():
    recipe = Recipe(epochs=10, lr=3e-3, schedule="onecycle", minutes=1)
    st_ = _state(recipe, 5)
    sched = st_.sched
    ctx = _Ctx(recipe)
    fit_to_budget(st_, ctx, 5, epoch_s=30.0, spent_s=55.0, done_epochs=2, done_steps=10)
    assert st_.epochs == 2 and st_.sched is sched
    assert ctx.lines == ["time budget 1 min: stopping after epoch 2 of 10; another would take ~0.5 min of the "
                         "0.1 left"]


def test_training_follows_the_plan_and_ends_with_the_schedule_annealed(synth_data, tmp_path, monkeypatch):
    import unetseg.training as training

    plans = []

    def two(budget_s, spent_s, done, epoch_s, most):
        plans.append((done, most))
        return 2

    monkeypatch.setattr(training, "epochs_that_fit", two)
    lines = []
    result = train_in_process(synth_data, tmp_path / "run", log=lines.append, epochs=6, minutes=5,
                              schedule="onecycle", lr=3e-3)
    assert [r["epoch"] for r in result["history"]] == [1, 2]
    assert plans == [(1, 6), (2, 6)]  # planned at the end of each epoch (a few steps per epoch: no probe)
    assert result["history"][-1]["lr"] < 3e-3 * 0.03  # annealed (not 6 epochs' schedule cut at 2: ~2e-3)
    assert "time budget 5 min: 2 of 6 epochs fit" in "\n".join(lines)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["epochs_run"] == 2 and info["recipe"]["minutes"] == 5 and info["recipe"]["epochs"] == 6
    assert not (tmp_path / "run" / "resume.safetensors").exists()  # finished, not interrupted


def test_a_real_budget_stops_training_long_before_the_recipe_s_epochs(synth_data, tmp_path):
    budget_s = 6.0
    result = train_in_process(synth_data, tmp_path / "run", epochs=500, minutes=budget_s / 60,
                              schedule="onecycle", lr=3e-3)
    epochs = [r["epoch"] for r in result["history"]]
    assert 1 <= len(epochs) < 500 and epochs == list(range(1, len(epochs) + 1))
    slowest = max(r["seconds"] for r in result["history"])
    assert result["seconds"] <= budget_s + 2 * slowest + 1  # overshoot: at most the pace's drift


def test_the_planned_epochs_survive_an_interruption():
    recipe = Recipe(epochs=10, schedule="onecycle")
    st_ = _state(recipe, 5)
    st_.epochs = 4
    saved = st_.state_dict(World(), 3, 0, st_.gen.get_state(), 0.0, 60.0)
    again = _state(recipe, 5)
    again.load_state_dict(saved, World())
    assert again.epochs == 4
    del saved["epochs"]  # a state saved by a version without budgets: the recipe's epochs
    again = _state(recipe, 5)
    again.load_state_dict(saved, World())
    assert again.epochs == 10


def test_bad_budgets_and_a_budget_on_resume_are_refused_in_one_line(tmp_path):
    r = unetseg("train", "--out", tmp_path / "run", "--minutes", "-5")
    assert r.returncode == 2 and r.stderr.strip() == \
        "error: --minutes -5.0: must be a number of minutes (0 = no time budget)"
    r = unetseg("train", "--resume", tmp_path / "run", "--minutes", "30")
    assert r.returncode == 2 and "drop --minutes" in r.stderr and "Traceback" not in r.stderr
