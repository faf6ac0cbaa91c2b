#!/usr/bin/env python3
# fileno() of the standard streams and of their buffers (trac.cgi calls both).
import os
import sys
numbers = [sys.stdin.fileno(), sys.stdout.fileno(), sys.stderr.fileno(),
           sys.stdin.buffer.fileno(), sys.stdout.buffer.fileno(), sys.stderr.buffer.fileno()]
print("Content-Type: text/plain")
print()
print("filenos:", numbers)
sys.stdout.flush()
data = open("data.txt", "rb")
size = os.fstat(data.fileno()).st_size
sent = 0
while sent < size:
    sent += os.sendfile(sys.stdout.fileno(), data.fileno(), sent, size - sent)
print("sent", sent, "bytes with sendfile")
