"""Population Based Training of a numpy MLP: ``pbt_mnist_mlp.py`` without PyTorch.

The same example as ``pbt_mnist_mlp.py`` (SHERPA's PBT notebook): poptune tunes Adam's
learning rate while a population of small MLPs (64 -> 64 ReLU -> 10 softmax) trains on
scikit-learn's bundled 8x8 digits, one epoch per trial. Bottom members are replaced by
copies of top members (weights and Adam moments) whose learning rate is multiplied by 0.8
or 1.2. Here the network, its gradients and Adam are a few lines of numpy, and checkpoints
are ``.npz`` files, so the example needs only numpy, scikit-learn and (for the figure)
matplotlib::

    pip install -e . scikit-learn matplotlib && python examples/pbt_digits_numpy.py

Options: ``--output-dir`` (default ``examples/output/pbt_digits_numpy``, whatever the working
directory; it receives ``results.csv``, ``study.json``, ``pbt_lineage.png`` and the
checkpoints in ``models/``), ``--seed``, ``--population-size``, ``--generations`` and
``--quiet``. Without matplotlib the figure is skipped with a message. ``main(argv)`` runs
the example and returns the finished study.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import poptune as sherpa
import poptune.plot

_HERE = str(Path(__file__).resolve().parent)

__all__ = ["MLP", "load_data", "main", "parse_args"]

BATCH_SIZE = 32
_WEIGHTS = ("w1", "b1", "w2", "b2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Population Based Training of a numpy MLP on scikit-learn's digits."
    )
    parser.add_argument(
        "--output-dir",
        default=os.path.join(_HERE, "output", "pbt_digits_numpy"),
        help="where results.csv, study.json, the figure and models/ go (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="study and training seed")
    parser.add_argument("--population-size", type=int, default=5, help="members per generation")
    parser.add_argument("--generations", type=int, default=5, help="number of generations")
    parser.add_argument("--quiet", action="store_true", help="no per-trial output")
    return parser.parse_args(argv)


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits scaled to [0, 1], flattened to (N, 64); the torch script's fixed split."""
    digits = load_digits()
    x = (digits.images / 16.0).reshape(len(digits.images), -1)
    y = digits.target.astype(np.int64)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    return x_train, y_train, x_val, y_val


class MLP:
    """64 -> 64 ReLU -> 10 softmax, trained with Adam; weights and Adam state in one dict."""

    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def __init__(self, state: dict[str, np.ndarray]) -> None:
        self.state = state

    @classmethod
    def new(cls, learning_rate: float, rng: np.random.Generator) -> MLP:
        """Fresh weights, uniform in +-1/sqrt(fan_in) as PyTorch's Linear, zero moments."""
        state: dict[str, np.ndarray] = {}
        for name, fan_in, shape in (
            ("w1", 64, (64, 64)),
            ("b1", 64, (64,)),
            ("w2", 64, (64, 10)),
            ("b2", 64, (10,)),
        ):
            bound = 1.0 / math.sqrt(fan_in)
            state[name] = rng.uniform(-bound, bound, size=shape)
            state[f"m_{name}"] = np.zeros(shape)
            state[f"v_{name}"] = np.zeros(shape)
        state["step"] = np.array(0)
        state["learning_rate"] = np.array(float(learning_rate))
        return cls(state)

    @classmethod
    def load(cls, path: str) -> MLP:
        with np.load(path) as data:
            return cls({key: data[key] for key in data.files})

    def save(self, path: str) -> None:
        np.savez(path, **self.state)

    @property
    def learning_rate(self) -> float:
        return float(self.state["learning_rate"])

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.state["learning_rate"] = np.array(float(value))

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.state
        hidden = np.maximum(x @ s["w1"] + s["b1"], 0.0)
        logits = hidden @ s["w2"] + s["b2"]
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return hidden, probs

    @staticmethod
    def _loss(probs: np.ndarray, y: np.ndarray) -> float:
        return float(-np.mean(np.log(probs[np.arange(len(y)), y] + 1e-12)))

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One Adam step on a mini-batch; returns its cross-entropy loss."""
        s = self.state
        hidden, probs = self._forward(x)
        loss = self._loss(probs, y)
        d_logits = probs.copy()
        d_logits[np.arange(len(y)), y] -= 1.0
        d_logits /= len(y)
        d_hidden = (d_logits @ s["w2"].T) * (hidden > 0)
        grads = {
            "w2": hidden.T @ d_logits,
            "b2": d_logits.sum(axis=0),
            "w1": x.T @ d_hidden,
            "b1": d_hidden.sum(axis=0),
        }
        step = int(s["step"]) + 1
        s["step"] = np.array(step)
        lr = self.learning_rate
        correction1 = 1.0 - self.beta1**step
        correction2 = 1.0 - self.beta2**step
        for name in _WEIGHTS:
            g = grads[name]
            m = s[f"m_{name}"] = self.beta1 * s[f"m_{name}"] + (1.0 - self.beta1) * g
            v = s[f"v_{name}"] = self.beta2 * s[f"v_{name}"] + (1.0 - self.beta2) * g * g
            s[name] = s[name] - lr * (m / correction1) / (np.sqrt(v / correction2) + self.eps)
        return loss

    def train_one_epoch(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> float:
        """One pass over the training set in shuffled mini-batches; returns the mean loss."""
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            total += self.train_step(x[idx], y[idx]) * len(idx)
        return total / len(x)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Validation (loss, accuracy)."""
        _, probs = self._forward(x)
        return self._loss(probs, y), float(np.mean(probs.argmax(axis=1) == y))


def main(argv: list[str] | None = None) -> sherpa.Study:
    """Run the example; returns the finished study."""
    args = parse_args(argv)
    log = (lambda *a, **k: None) if args.quiet else print
    started = time.perf_counter()

    output_dir = Path(args.output_dir)
    model_dir = output_dir / "models"
    model_dir.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_val, y_val = load_data()

    parameters = [sherpa.Continuous("learning_rate", [1e-4, 1e-2], "log")]
    algorithm = sherpa.algorithms.PopulationBasedTraining(
        population_size=args.population_size,
        num_generations=args.generations,
        perturbation_factors=(0.8, 1.2),
        parameter_range={"learning_rate": [1e-6, 1e-1]},
    )
    study = sherpa.Study(
        parameters=parameters, algorithm=algorithm, lower_is_better=False, seed=args.seed
    )

    for trial in study:
        generation = trial.parameters["generation"]
        load_from = trial.parameters["load_from"]
        training_lr = trial.parameters["learning_rate"]
        # One seed per (run, trial): weight init of fresh models and batch order.
        rng = np.random.default_rng([args.seed, trial.id])

        log("-" * 100)
        log(f"Generation {generation} (trial {trial.id})")

        if load_from == "":
            log(f"Creating new model with learning rate {training_lr}\n")
            model = MLP.new(training_lr, rng)
        else:
            checkpoint_path = os.path.join(model_dir, load_from + ".npz")
            log(f"Loading model from {checkpoint_path}\n")
            model = MLP.load(checkpoint_path)
            if not math.isclose(model.learning_rate, training_lr, rel_tol=1e-9):
                log(f"Perturbing learning rate from {model.learning_rate} to {training_lr}")
            else:
                log(f"Continuing training with learning rate {training_lr}")
            model.learning_rate = training_lr

        train_loss = model.train_one_epoch(x_train, y_train, rng)
        loss, accuracy = model.evaluate(x_val, y_val)
        log(f"Training loss: {train_loss:.4f}  validation loss: {loss:.4f}")
        log(f"Validation accuracy: {accuracy:.4f}")

        study.add_observation(
            trial=trial, iteration=generation, objective=accuracy, context={"loss": loss}
        )
        study.finalize(trial=trial)

        save_path = os.path.join(model_dir, trial.parameters["save_to"] + ".npz")
        log(f"Saving model at: {save_path}")
        model.save(save_path)
        study.save(output_dir)

    best = study.get_best_result()
    print("\nThe best found hyperparameter configuration is:")
    print(best)
    if best:
        print("\nThis model is stored at:")
        print(os.path.join(model_dir, best["save_to"] + ".npz"))
    print(f"\nResults saved in {output_dir} (results.csv, study.json)")
    try:  # matplotlib is optional: poptune.plot raises an ImportError without it
        figure = poptune.plot.lineage(study, parameter="learning_rate")
    except ImportError:
        print("matplotlib is not installed: skipping the lineage figure")
    else:
        figure.axes[0].set_ylabel("Validation accuracy")
        figure.savefig(output_dir / "pbt_lineage.png", dpi=100)
        print(f"Lineage figure: {output_dir / 'pbt_lineage.png'}")
    print(f"Total time: {time.perf_counter() - started:.1f} s")
    return study


if __name__ == "__main__":
    main()
