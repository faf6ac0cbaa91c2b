#!/usr/bin/env python3
# Waits for a child that never ends, before any output: a 504 at the deadline.
import subprocess
subprocess.call(["sleep", "600"])
print("Content-Type: text/plain")
print()
print("never reached")
