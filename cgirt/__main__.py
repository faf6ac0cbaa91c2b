"""`python -m cgirt`: the `cgirt` command."""

from .cli import main

raise SystemExit(main())
