import sys

from workers.common.worker import main
from workers.creator.worker import Creator, parser

sys.exit(main(Creator, parser()))
