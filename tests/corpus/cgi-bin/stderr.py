#!/usr/bin/env python3
import sys
sys.stderr.write("a warning from the script\n")
print("Content-Type: text/plain")
print()
print("body after stderr")
