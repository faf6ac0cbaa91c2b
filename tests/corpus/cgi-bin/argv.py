#!/usr/bin/env python3
import sys
print("Content-Type: text/plain")
print()
print(repr(sys.argv[1:]))
