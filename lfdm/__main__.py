import sys

from lfdm.cli import main

sys.exit(main())
