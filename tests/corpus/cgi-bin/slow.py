#!/usr/bin/env python3
import os
import time
time.sleep(float(os.environ.get("QUERY_STRING") or 1))
print("Content-Type: text/plain")
print()
print("slow done", os.getpid())
