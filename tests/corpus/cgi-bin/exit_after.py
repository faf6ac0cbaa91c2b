#!/usr/bin/env python3
import sys
print("Content-Type: text/plain")
print()
print("said my piece")
sys.exit(1)
