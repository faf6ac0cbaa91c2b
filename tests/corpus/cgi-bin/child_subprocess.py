#!/usr/bin/env python3
# subprocess.call with inherited stdout: the file reaches the client through the child.
import subprocess
import sys
print("Content-Type: text/plain")
print()
sys.stdout.flush()
status = subprocess.call(["cat", "data.txt"])
print("cat exited with", status)
