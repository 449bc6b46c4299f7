"""``python -m poptune`` runs the command line."""

from poptune.cli import main

raise SystemExit(main())
