import sys

from fwsvd_core.cli import main

sys.exit(main())
