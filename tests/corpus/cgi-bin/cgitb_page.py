#!/usr/bin/env python3
import cgitb
cgitb.enable()
def broken():
    return {}["missing key"]
broken()
