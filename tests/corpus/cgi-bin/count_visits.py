#!/usr/bin/env python3
import os

import site_state

site_state.VISITS.append(os.getpid())
print("Content-Type: text/plain")
print()
print(f"visits={len(site_state.VISITS)} pid={os.getpid()}")
