#!/usr/bin/env python3
# A child reads the request body from the stdin it inherits.
import subprocess
import sys
print("Content-Type: text/plain")
print()
sys.stdout.flush()
subprocess.call(["cat"])
print()
print("cat is done")
