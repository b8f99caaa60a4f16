import sys

from edmbench.cli import main

sys.exit(main())
