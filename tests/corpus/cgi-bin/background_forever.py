#!/usr/bin/env python3
# A child that holds stdout and never lets go: the response lasts until the deadline.
import subprocess
import sys
print("Content-Type: text/plain")
print()
print("before the deadline")
sys.stdout.flush()
subprocess.Popen(["sleep", "600"])
