"""`python -m drd` runs the command line."""

import sys

from drd.cli import main

sys.exit(main())
