import sys

from glmtune.cli import main

sys.exit(main())
