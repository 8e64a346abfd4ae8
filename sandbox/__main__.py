"""`python -m sandbox`: run the sandbox server (see `sandbox.cli`)."""

import sys

from sandbox.cli import main

sys.exit(main())
