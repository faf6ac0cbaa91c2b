#!/usr/bin/env python3
# Classic CGI's surprise: print() is buffered, the child's output is not, so the child's
# line arrives first.
import os
import sys
print("Content-Type: text/plain")
print()
sys.stdout.flush()
print("printed before the child")
os.system("echo from the child")
