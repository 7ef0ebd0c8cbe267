"""``python -m services.beat``: the beat process (``cronwork beat`` runs it)."""

import sys

from services.beat.main import run

sys.exit(run())
