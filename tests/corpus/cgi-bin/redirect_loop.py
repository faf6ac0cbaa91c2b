#!/usr/bin/env python3
print("Location: /cgi-bin/redirect_loop.py")
print()
