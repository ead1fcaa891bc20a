import sys

from tfmobile.cli import main

sys.exit(main())
