#!/usr/bin/env python3
print("Location: /cgi-bin/env.py?redirected=yes")
print()
