"""`python -m cgirt.devserver`: run the development front end on its own."""

import sys

from .front import main

sys.exit(main())
