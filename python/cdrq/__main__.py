import sys

from cdrq.cli import main

sys.exit(main())
