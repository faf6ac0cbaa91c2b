#!/usr/bin/env python3
# A child left running in the background still holds stdout: the response waits for it.
import subprocess
import sys
print("Content-Type: text/plain")
print()
sys.stdout.flush()
subprocess.Popen(["sh", "-c", "sleep 1; echo late from the background"])
print("the script is done")
