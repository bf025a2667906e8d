"""``python -m unikernel_sim`` is ``unisim``."""
import sys

from unikernel_sim.launch import main

sys.exit(main())
