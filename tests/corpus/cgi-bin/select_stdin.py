#!/usr/bin/env python3
# select() on stdin, as a script with a read deadline does, then the body through its fd.
import os
import select
import sys
ready, _, _ = select.select([sys.stdin], [], [], 10)
body = os.read(sys.stdin.fileno(), 65536) if ready else b""
print("Content-Type: text/plain")
print()
print("readable:", bool(ready), "body:", body.decode())
