"""``python -m attack_engine``: see :mod:`attack_engine.cli`."""

import sys

from attack_engine.cli import main

sys.exit(main())
