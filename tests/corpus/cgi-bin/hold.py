#!/usr/bin/env python3
# Holds its worker until the test creates cgi-bin/release-NAME (NAME: the query string), so a
# test decides when it ends; gives up after a minute.
import os
import time

release = "release-" + (os.environ.get("QUERY_STRING") or "all")
deadline = time.monotonic() + 60
while not os.path.exists(release) and time.monotonic() < deadline:
    time.sleep(0.01)
print("Content-Type: text/plain")
print()
print("released", os.getpid())
