"""`python -m modelyard.engine CONFIG_JSON`: an engine process (started by the gateway)."""

import sys

from modelyard.engine.serve import main

sys.exit(main(sys.argv[1:]))
