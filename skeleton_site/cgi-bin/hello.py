#!/usr/bin/env python3
"""The smallest CGI script: print the headers, a blank line, then the page."""

import datetime
import html
import os

now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
server = html.escape(os.environ.get("SERVER_SOFTWARE", "an unknown server"))

print("Content-Type: text/html; charset=utf-8")
print()
print("<!DOCTYPE html>")
print("<html><head><meta charset='utf-8'><title>Hello</title></head><body>")
print("<h1>Hello, world!</h1>")
print(f"<p>This page was made by a Python CGI script at {now}, served by {server}.</p>")
print("<p>Edit <code>cgi-bin/hello.py</code>, upload it, and reload: the change is live.</p>")
print("<p><a href='/'>Back</a></p>")
print("</body></html>")
