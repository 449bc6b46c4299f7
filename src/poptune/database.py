"""SHERPA's ``sherpa.database``: its in-job reporter :class:`Client` lived here
(``from sherpa.database import Client``). poptune needs no database server: the client reports
to the study's own storage (:mod:`poptune.execution.client`)."""

from poptune.execution.client import Client

__all__ = ["Client"]
