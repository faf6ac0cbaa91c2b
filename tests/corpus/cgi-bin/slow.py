#!/usr/bin/env python3
import os
import time
with open("slow-started.log", "a") as log:  # lets a test see the request is running
    log.write(f"{os.getpid()}\n")
time.sleep(float(os.environ.get("QUERY_STRING") or 1))
print("Content-Type: text/plain")
print()
print("slow done", os.getpid())
