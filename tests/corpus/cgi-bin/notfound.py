#!/usr/bin/env python3
print("Status: 404 Not Found")
print("Content-Type: text/plain")
print()
print("no such thing here")
