"""`python -m ctrip`: the same command line as the `ctrip` console script."""

import sys

from ctrip.cli import main

sys.exit(main())
