import sys

from workers.common.worker import main
from workers.downloader.worker import Downloader, parser

sys.exit(main(Downloader, parser()))
