"""Benchmarks of the attack engine and the app (``python -m bench``; see ``bench/run_all.py``).

OpenMP threads wait passively here unless the caller set ``OMP_WAIT_POLICY``: with the default (spinning) policy,
2 threads on 2 cores shared with any other busy process made the selfie model's iteration 15-20× slower
(a parallel region waits for a descheduled thread); passive waiting kept it at the 1-thread speed.  It has to be
set before torch (libgomp) is loaded, hence here.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
