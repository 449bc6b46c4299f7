"""SHERPA's ``sherpa.algorithms.bayesian_optimization`` (its examples'
``import sherpa.algorithms.bayesian_optimization as bayesian_optimization``): ``GPyOpt``,
poptune's own Gaussian-process Bayesian optimization under SHERPA's name
(:mod:`poptune.algorithms.bayesian`)."""

from poptune.algorithms.bayesian import BayesianOptimization, GPyOpt

__all__ = ["BayesianOptimization", "GPyOpt"]
