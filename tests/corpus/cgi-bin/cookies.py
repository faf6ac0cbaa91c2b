#!/usr/bin/env python3
print("Content-Type: text/plain")
print("Set-Cookie: a=1; Path=/")
print("Set-Cookie: b=2; Path=/; HttpOnly")
print("Set-Cookie: c=3")
print("X-Custom: yes")
print()
print("three cookies")
