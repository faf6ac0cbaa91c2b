#!/usr/bin/env python3
import sys
print("Content-Type: application/octet-stream")
print()
sys.stdout.flush()
block = b"x" * (1024 * 1024)
for _ in range(1024):  # 1 GiB
    sys.stdout.buffer.write(block)
