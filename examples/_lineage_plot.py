"""The lineage figure of the PBT examples, drawn from a study's results table alone.

Shared by ``pbt_mnist_mlp.py`` (PyTorch) and ``pbt_digits_numpy.py`` (numpy only). Works on
``study.results`` or on the ``results.csv`` written by ``study.save()`` and read back with
``pandas.read_csv`` (where a founder's empty ``lineage`` comes back as NaN).

matplotlib is imported inside :func:`plot_lineage`, and only its object-oriented API is used
(no ``pyplot``): the figure is rendered by the Agg canvas straight to a PNG, whatever backend
the calling process has chosen, and no global matplotlib state is touched.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

__all__ = ["lineage_paths", "plot_lineage"]


def _ancestors(lineage: Any) -> list[int]:
    """``'1,6,12,'`` -> ``[1, 6, 12]``; ``''``, None or NaN (a founder) -> ``[]``."""
    if not isinstance(lineage, str):
        return []
    return [int(x) for x in lineage.split(",") if x.strip()]


def lineage_paths(results_df: pd.DataFrame) -> list[dict[str, Any]]:
    """One path per branch of the population's family tree.

    Each COMPLETED trial that no other COMPLETED trial continues from (a leaf) gives one path:
    its ancestors (``lineage``) followed by the trial itself. Together the paths cover every
    completed trial, so the figure shows the same segments as drawing every completed trial's
    path (what the SHERPA notebook does) without stacking copies of shared prefixes.

    Returns:
        A list of dicts ``{'founder', 'trial_ids', 'generation', 'objective',
        'learning_rate'}`` (lists aligned along the path), ordered by leaf trial id.
        Ancestors missing from the table (not COMPLETED) are left out of their path.
    """
    completed = results_df[results_df["Status"] == "COMPLETED"]
    rows: dict[int, dict[str, Any]] = {}
    for record in completed.to_dict("records"):
        rows[int(record["Trial-ID"])] = record
    parents = set()
    for record in rows.values():
        ancestors = _ancestors(record.get("lineage"))
        if ancestors:
            parents.add(ancestors[-1])
    paths = []
    for tid in sorted(rows):
        if tid in parents:
            continue
        chain = [a for a in _ancestors(rows[tid].get("lineage")) if a in rows] + [tid]
        paths.append(
            {
                "founder": chain[0],
                "trial_ids": chain,
                "generation": [int(rows[t]["generation"]) for t in chain],
                "objective": [float(rows[t]["Objective"]) for t in chain],
                "learning_rate": [float(rows[t]["learning_rate"]) for t in chain],
            }
        )
    return paths


def plot_lineage(results_df: pd.DataFrame, n_founders: int, path: str | os.PathLike[str]) -> str:
    """Write the two-panel lineage figure of a PBT study to a PNG file.

    Left: validation accuracy (the ``Objective`` column) per generation; right: the learning
    rate per generation on a log axis. One line per branch of the family tree (see
    :func:`lineage_paths`), coloured by its founder, the generation-1 member it descends from.

    Args:
        results_df: ``study.results`` (or ``results.csv`` read back) of a PBT study with a
            ``learning_rate`` parameter.
        n_founders: the population size (number of generation-1 members).
        path: where to write the PNG.

    Returns:
        ``path`` as a str.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    paths = lineage_paths(results_df)
    founders = sorted({p["founder"] for p in paths})
    n_colours = max(int(n_founders), len(founders), 1)
    cmap = colormaps["rainbow"]
    colour_of = {
        founder: cmap(0.5 if n_colours == 1 else i / (n_colours - 1))
        for i, founder in enumerate(founders)
    }

    fig = Figure(figsize=(15, 5), layout="constrained")
    acc_ax, lr_ax = fig.subplots(ncols=2)
    legend_lines = {}
    for p in paths:
        founder = p["founder"]
        style = {"color": colour_of[founder], "linewidth": 2.5, "marker": "o", "markersize": 4}
        (line,) = acc_ax.plot(p["generation"], p["objective"], "-", **style)
        lr_ax.plot(p["generation"], p["learning_rate"], "-", **style)
        legend_lines.setdefault(founder, line)

    generations = sorted({g for p in paths for g in p["generation"]})
    for ax in (acc_ax, lr_ax):
        ax.set_xlabel("Generation")
        if generations:
            ax.set_xticks(generations)
        ax.grid(True, alpha=0.3)
    acc_ax.set_ylabel("Validation Accuracy")
    acc_ax.set_title("Validation accuracy along each lineage")
    lr_ax.set_ylabel("Learning Rate (log scale)")
    lr_ax.set_yscale("log")
    lr_ax.set_title("Learning rate along each lineage")
    if legend_lines:
        acc_ax.legend(
            [legend_lines[f] for f in founders],
            [f"founder trial {f}" for f in founders],
            loc="lower right",
            fontsize="small",
        )
    fig.savefig(path, dpi=100)
    return str(path)
