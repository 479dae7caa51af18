"""Entry point of ``python -m ftp``; see ``ftp.cli``."""

import sys

from ftp.cli import main

sys.exit(main())
