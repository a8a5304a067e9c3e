import sys

from hivectl.cli import main

sys.exit(main())
