#!/usr/bin/env python3
import sys
print("Content-Type: application/octet-stream")
print()
sys.stdout.flush()
block = bytes(range(256)) * 4096  # 1 MiB
for _ in range(20):
    sys.stdout.buffer.write(block)
