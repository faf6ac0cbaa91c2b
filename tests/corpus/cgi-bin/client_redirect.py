#!/usr/bin/env python3
print("Location: http://example.invalid/elsewhere")
print("Content-Type: text/plain")
print()
print("moved")
