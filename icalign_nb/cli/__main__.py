"""`python -m icalign_nb.cli`: the `icalign` command."""

import sys

from . import main

sys.exit(main())
