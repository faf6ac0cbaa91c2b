#!/usr/bin/env python3
# Asks for the descriptors first (as trac.cgi does), then reads the form through sys.stdin.
import sys
import urllib.parse
sys.stdin.fileno()
sys.stdout.fileno()
length = int(sys.stdin and __import__("os").environ.get("CONTENT_LENGTH") or 0)
fields = urllib.parse.parse_qs(sys.stdin.buffer.read(length).decode())
print("Content-Type: text/plain")
print()
print(sorted(fields.items()))
