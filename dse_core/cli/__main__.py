"""``python -m dse_core.cli``: what the ``dse`` script runs (local workers start this way)."""

from dse_core.cli import main

main()
