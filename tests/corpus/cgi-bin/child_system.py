#!/usr/bin/env python3
# A child started with os.system writes straight into the response.
import os
import sys
print("Content-Type: text/plain")
print()
sys.stdout.flush()
os.system("echo from the shell")
print("after the shell")
