#!/usr/bin/env python3
# A child's stderr goes to the error log; its stdout to the response.
import os
import sys
print("Content-Type: text/plain")
print()
sys.stdout.flush()
os.system("echo to the log from the child >&2; echo to the page from the child")
