import sys

from whost.cli import main

sys.exit(main())
