"""`python -m mnistlab` (also what `torchrun -m mnistlab train ...` runs)."""

import sys

from mnistlab.cli import main

sys.exit(main())
