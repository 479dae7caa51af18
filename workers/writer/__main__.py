import sys

from workers.common.worker import main
from workers.writer.worker import Writer, parser

sys.exit(main(Writer, parser()))
