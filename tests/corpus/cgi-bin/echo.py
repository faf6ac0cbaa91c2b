#!/usr/bin/env python3
import hashlib
import os
import sys
data = sys.stdin.buffer.read()
print("Content-Type: text/plain")
print()
print(len(data), hashlib.sha256(data).hexdigest(), os.environ.get("CONTENT_LENGTH"))
