#!/usr/bin/env python3
import hashlib
import sys
digest = hashlib.sha256()
total = 0
while True:
    chunk = sys.stdin.buffer.read(65536)
    if not chunk:
        break
    digest.update(chunk)
    total += len(chunk)
print("Content-Type: text/plain")
print()
print(total, digest.hexdigest())
