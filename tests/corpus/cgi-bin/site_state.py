#!/usr/bin/env python3
"""A site helper with module-level state: fresh on every request, unless its directory
keeps its modules loaded (.cgirt-keep-modules)."""
VISITS: list[int] = []
