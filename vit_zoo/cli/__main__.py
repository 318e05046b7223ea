"""``python -m vit_zoo.cli``."""
import sys

from vit_zoo.cli import main

sys.exit(main())
