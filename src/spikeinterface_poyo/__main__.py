"""``python -m spikeinterface_poyo``: the command line (see :mod:`spikeinterface_poyo.cli`)."""

import sys

from .cli import main

sys.exit(main())
