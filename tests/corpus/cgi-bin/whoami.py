#!/usr/bin/env python3
import os
print("Content-Type: text/plain")
print()
try:
    with open(os.environ["QUERY_STRING"]) as f:
        readable = "readable"
except OSError as exc:
    readable = type(exc).__name__
print(os.getuid(), os.getgid(), readable)
