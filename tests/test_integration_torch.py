"""poptune.integrations.torch: one-call training state, hyperparameters applied after loading."""

from __future__ import annotations

import importlib
import random
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch: pip install torch==2.13.0")

import poptune as pt  # noqa: E402
from poptune import CheckpointError, Continuous, Study, algorithms  # noqa: E402
from poptune.exceptions import ArgumentTypeError, MissingDependencyError  # noqa: E402
from poptune.integrations import HyperparameterNotAppliedError, apply_hyperparameters  # noqa: E402
from poptune.integrations import torch as pt_torch  # noqa: E402

X = torch.randn(96, 6, generator=torch.Generator().manual_seed(0))
Y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 2)
        )

    def forward(self, x):
        return self.body(x)


def make(seed: int, lr: float = 0.05):
    torch.manual_seed(seed)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    scaler = torch.amp.GradScaler("cpu")
    return model, optimizer, scheduler, scaler


def train_epoch(model, optimizer, scheduler, scaler) -> float:
    """One epoch touching every RNG: shuffling and dropout (torch), noise (numpy), a coin
    (random)."""
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X, Y), batch_size=16, shuffle=True
    )
    model.train()
    total = 0.0
    for xb, yb in loader:
        noise = torch.from_numpy(np.random.normal(0, 0.01, size=xb.shape).astype(np.float32))
        scale = 1.0 if random.random() < 0.5 else 0.9
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xb + noise) * scale, yb)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += loss.item()
    scheduler.step()
    return total


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def test_an_interrupted_run_resumed_from_its_checkpoint_matches_an_uninterrupted_one(tmp_path):
    seed_all(3)
    model, optimizer, scheduler, scaler = make(1)
    for _ in range(4):
        train_epoch(model, optimizer, scheduler, scaler)
    straight = {k: v.clone() for k, v in model.state_dict().items()}

    seed_all(3)
    model, optimizer, scheduler, scaler = make(1)
    for _ in range(2):
        train_epoch(model, optimizer, scheduler, scaler)
    path = pt_torch.save_state(
        tmp_path / "ckpt", model, optimizer, scheduler, scaler, epoch=2, step=12,
        extra={"note": "half way", "best": torch.tensor(0.5), "history": [1.0, 0.5]},
    )  # fmt: skip
    del model, optimizer, scheduler, scaler

    seed_all(99)  # a new process would start elsewhere
    model, optimizer, scheduler, scaler = make(7, lr=0.3)  # other weights, another lr
    state = pt_torch.load_state(path, model, optimizer, scheduler, scaler)
    assert (state.epoch, state.step, state.rng_restored) == (2, 12, True)
    assert state.extra["note"] == "half way" and state.extra["history"] == [1.0, 0.5]
    for _ in range(2):
        train_epoch(model, optimizer, scheduler, scaler)
    resumed = model.state_dict()
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_the_file_loads_with_weights_only_and_holds_plain_rng_states(tmp_path):
    model, optimizer, scheduler, scaler = make(0)
    path = pt_torch.save_state(tmp_path / "c", model, optimizer, scheduler, scaler, epoch=1)
    raw = torch.load(path, weights_only=True)  # no pickled code or numpy objects
    assert raw["format"] == pt_torch.FORMAT
    assert isinstance(raw["rng"]["numpy"]["keys"], list) and len(raw["rng"]["numpy"]["keys"]) == 624
    assert isinstance(raw["rng"]["python"]["state"], list)
    assert raw["scaler"]["scale"] == 65536.0
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temporary file left behind


def test_extra_values_that_weights_only_would_refuse_are_named_at_save(tmp_path):
    model, optimizer, _, _ = make(0)
    with pytest.raises(ArgumentTypeError, match=r"extra\['weights'\] is ndarray"):
        pt_torch.save_state(tmp_path / "c", model, optimizer, extra={"weights": np.zeros(3)})
    with pytest.raises(ArgumentTypeError, match="epoch must be an int"):
        pt_torch.save_state(tmp_path / "c", model, optimizer, epoch=1.5)
    assert not list(tmp_path.iterdir())


def test_a_foreign_or_mismatched_file_is_a_checkpoint_error(tmp_path):
    model, optimizer, _, _ = make(0)
    torch.save({"model": model.state_dict()}, tmp_path / "foreign")
    with pytest.raises(CheckpointError, match="not a checkpoint of poptune.integrations.torch"):
        pt_torch.load_state(tmp_path / "foreign", model, optimizer)
    pt_torch.save_state(tmp_path / "c", model, optimizer)
    with pytest.raises(CheckpointError, match="holds 1 optimizer state"):
        pt_torch.load_state(tmp_path / "c", model, [optimizer, optimizer])
    with pytest.raises(CheckpointError, match="does not fit the model"):
        pt_torch.load_state(tmp_path / "c", torch.nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match="does not exist"):
        pt_torch.load_state(tmp_path / "missing", model)


# -- hyperparameters after loading -------------------------------------------------------------
def test_apply_maps_names_to_param_group_keys_and_returns_what_it_applied():
    model = Net()
    optimizer = torch.optim.AdamW(
        [{"params": model.body[0].parameters()}, {"params": model.body[3].parameters()}], lr=1e-3
    )
    params = {"learning_rate": 0.02, "weight_decay": 0.1, "betas": [0.8, 0.9], "units": 16,
              "load_from": "3", "generation": 2}  # fmt: skip
    applied = apply_hyperparameters(optimizer, params)
    assert applied == {"learning_rate": 0.02, "weight_decay": 0.1, "betas": [0.8, 0.9]}
    for group in optimizer.param_groups:
        assert (group["lr"], group["weight_decay"], group["betas"]) == (0.02, 0.1, (0.8, 0.9))


def test_a_custom_mapping_adds_renames_and_removes_keys():
    optimizer = torch.optim.SGD(Net().parameters(), lr=0.1)
    params = {"step_size": 0.03, "momentum": 0.5, "eps": 1e-3}
    applied = apply_hyperparameters(optimizer, params, {"step_size": "lr", "eps": None})
    assert applied == {"step_size": 0.03, "momentum": 0.5}
    assert optimizer.param_groups[0]["lr"] == 0.03 and optimizer.param_groups[0]["momentum"] == 0.5
    with pytest.raises(ArgumentTypeError, match="mapping must map str to str or None"):
        apply_hyperparameters(optimizer, params, {"step_size": 3})


def test_a_parameter_mapped_to_a_key_no_group_has_is_an_error_naming_it():
    optimizer = torch.optim.Adam(Net().parameters(), lr=1e-3)
    with pytest.raises(HyperparameterNotAppliedError, match=r"momentum=0\.9 did not reach") as e:
        apply_hyperparameters(optimizer, {"learning_rate": 0.01, "momentum": 0.9})
    assert "Adam" in str(e.value) and "mapping={'momentum': None}" in str(e.value)
    assert isinstance(e.value, pt.ConfigurationError)
    with pytest.raises(HyperparameterNotAppliedError, match="none was given"):
        apply_hyperparameters(None, {"lr": 0.1})
    with pytest.raises(ArgumentTypeError, match="must be a number"):
        apply_hyperparameters(optimizer, {"lr": "0.1"})


def test_a_value_that_does_not_stick_is_an_error_naming_it():
    class Copying:
        """An optimizer wrapper whose param_groups are copies: writes are lost."""

        def __init__(self, inner):
            self.inner = inner

        @property
        def param_groups(self):
            return [dict(g) for g in self.inner.param_groups]

    optimizer = Copying(torch.optim.SGD(Net().parameters(), lr=0.1))
    with pytest.raises(HyperparameterNotAppliedError, match=r"learning_rate=0\.5 .* reads lr=0\.1"):
        apply_hyperparameters(optimizer, {"learning_rate": 0.5})


def test_with_a_scheduler_the_new_lr_is_its_base_and_survives_its_next_step():
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 0.5**e)
    optimizer.step()  # no gradients: changes nothing, but keeps the scheduler's order check quiet
    scheduler.step()  # lr = 0.05, half way down the schedule
    apply_hyperparameters(optimizer, {"learning_rate": 0.4}, schedulers=scheduler)
    assert scheduler.base_lrs == [0.4]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2)  # same place in the schedule
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)  # 0.4 * 0.5**2, not 0.1 * …


# -- through a study's trials --------------------------------------------------------------------
def pbt_study(tmp_path, population=3, generations=3, **kw):
    parameters = [Continuous("learning_rate", [0.01, 0.2], "log")]
    algorithm = algorithms.PopulationBasedTraining(generations, population, **kw)
    return Study(parameters, algorithm, lower_is_better=True, seed=4,
                 checkpoint_dir=tmp_path / "ckpt")  # fmt: skip


def test_load_checkpoint_applies_the_trials_lr_over_the_loaded_one_and_restores_weights(tmp_path):
    study = pbt_study(tmp_path, population=2, generations=2, quantile_fraction=0.5)
    first = [study.get_suggestion() for _ in range(2)]
    for trial in first:
        model, optimizer, scheduler, _ = make(trial.id)
        state = pt_torch.load_checkpoint(trial, model, optimizer, scheduler)
        assert state.fresh and state.epoch == 0
        assert optimizer.param_groups[0]["lr"] == trial.parameters["learning_rate"]
        train_epoch(model, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False))
        pt_torch.save_checkpoint(trial, model, optimizer, scheduler, epoch=1)
        trial.report(float(trial.id), iteration=1)  # trial 1 is better (lower)
        study.finalize(trial)
    for trial in (study.get_suggestion(), study.get_suggestion()):
        donor = torch.load(trial.load_path, weights_only=True)
        model, optimizer, scheduler, _ = make(100, lr=0.9)
        state = pt_torch.load_checkpoint(trial, model, optimizer, scheduler)
        assert state.epoch == 1 and state.path == trial.load_path
        assert all(torch.equal(v, donor["model"][k]) for k, v in model.state_dict().items())
        assert scheduler.base_lrs == [trial.parameters["learning_rate"]]
        lr = optimizer.param_groups[0]["lr"]
        assert lr == pytest.approx(trial.parameters["learning_rate"] * 0.7)  # one StepLR step
        if trial.explore:  # exploited: the donor's saved lr would have been wrong
            assert lr != pytest.approx(donor["optimizers"][0]["param_groups"][0]["lr"])
            assert state.rng_restored is False  # a copy does not replay its donor's RNG
        else:
            assert state.rng_restored is True  # its own continuation: bit-identical
        study.finalize(trial, "FAILED")


def test_a_missing_checkpoint_is_a_loud_error(tmp_path):
    study = pbt_study(tmp_path, population=2, generations=2)
    first = [study.get_suggestion() for _ in range(2)]
    for trial in first:
        model, optimizer, _, _ = make(0)
        pt_torch.save_checkpoint(trial, model, optimizer, epoch=1)
        trial.report(1.0, iteration=1)
        study.finalize(trial)
    trial = study.get_suggestion()
    (study.checkpoints.directory / trial.load_from).unlink()
    with pytest.raises(CheckpointError, match="does not exist"):
        pt_torch.load_checkpoint(trial, *make(0)[:2])


def test_pbt_run_exploited_members_train_with_their_new_perturbed_value(tmp_path):
    seen: list[dict] = []

    def objective(trial):
        model, optimizer, scheduler, scaler = make(trial.id)
        state = pt_torch.load_checkpoint(trial, model, optimizer, scheduler, scaler)
        donor_lr = None
        if not state.fresh:
            donor = torch.load(trial.load_path, weights_only=True)
            donor_lr = donor["optimizers"][0]["param_groups"][0]["lr"]
        seen.append({"trial": trial.id, "explore": trial.explore, "donor_lr": donor_lr,
                     "base_lr": scheduler.base_lrs[0], "lr": optimizer.param_groups[0]["lr"],
                     "epoch": state.epoch})  # fmt: skip
        loss = train_epoch(model, optimizer, scheduler, scaler)
        trial.report(loss, iteration=state.epoch + 1)
        pt_torch.save_checkpoint(trial, model, optimizer, scheduler, scaler, epoch=state.epoch + 1)

    study = pbt_study(tmp_path, population=4, generations=3, quantile_fraction=0.25)
    study.optimize(objective, show_progress=False)
    trials = {t.id: t for t in study.trials}
    assert len(trials) == 12 and all(t.status == "COMPLETED" for t in trials.values())
    exploited = [s for s in seen if s["explore"]]
    assert exploited, "the run exploited no member"
    for s in seen:
        wanted = trials[s["trial"]].parameters["learning_rate"]
        assert s["base_lr"] == wanted  # read back from the optimizer's schedule after load
        assert s["lr"] == pytest.approx(wanted * 0.7 ** s["epoch"])
        assert s["epoch"] == trials[s["trial"]].generation - 1
    for s in exploited:
        assert s["lr"] != pytest.approx(s["donor_lr"])  # not the donor's rate


def test_without_torch_the_module_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "poptune.integrations.torch")
    with pytest.raises(MissingDependencyError, match=r'pip install "poptune\[torch\]"'):
        importlib.import_module("poptune.integrations.torch")


def test_import_poptune_does_not_import_the_integrations():
    import subprocess

    code = (
        "import sys, poptune; "
        "assert not [m for m in sys.modules if m.startswith('poptune.integrations')], "
        "sorted(sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
