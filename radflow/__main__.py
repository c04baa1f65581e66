import sys

from radflow.cli import main

sys.exit(main())
