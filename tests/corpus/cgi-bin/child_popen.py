#!/usr/bin/env python3
# os.popen reads a pipeline's output; os.system runs one whose output is the response's.
import os
import sys
captured = os.popen("echo one two three | tr a-z A-Z").read()
print("Content-Type: text/plain")
print()
print("captured:", captured.strip())
sys.stdout.flush()
os.system("printf 'b\\nc\\na\\n' | sort")
