import sys

from gmxai_eval.cli import main

sys.exit(main())
