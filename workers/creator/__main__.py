import sys

from workers.common.worker import main
from workers.creator import cli
from workers.creator.worker import Creator, parser

if sys.argv[1:2] == ["build"]:
    sys.exit(cli.main(sys.argv[2:]))
sys.exit(main(Creator, parser()))
