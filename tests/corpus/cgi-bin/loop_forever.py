#!/usr/bin/env python3
import time
while True:
    try:
        while True:
            time.sleep(0.01)
    except:  # noqa: E722 - the point: a script that swallows everything
        pass
