"""``pedf``: the command line (check, run, status, simulate, demo, analyze, scan, deadletter).

Each command imports what it needs when it runs, so ``pedf check`` does not load the service and
``pedf status`` loads almost nothing.
Imports: any part of :mod:`gateway`; nothing imports the CLI.
"""

from gateway.cli._main import main

__all__ = ["main"]
