"""``python -m unikernel_sim`` is ``unisim``."""
import sys

from unikernel_sim.cli import main

sys.exit(main())
