"""`python -m engine.cli ...`: the same as the `vison-engine` command."""

import sys

from .main import main

sys.exit(main())
