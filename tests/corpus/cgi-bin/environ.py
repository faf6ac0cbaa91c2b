#!/usr/bin/env python3
"""The whole environment the script gets, one NAME=value per line, sorted; then its stdin."""
import os
import sys

body = sys.stdin.buffer.read()
print("Content-Type: text/plain; charset=utf-8")
print()
for name in sorted(os.environ):
    print(f"{name}={os.environ[name]!r}")
print(f"stdin={len(body)} bytes")
