#!/usr/bin/env python3
import cgi
import hashlib
import html

form = cgi.FieldStorage()
print("Content-Type: text/html; charset=utf-8")
print()
print("<ul>")
for key in sorted(form.keys()):
    item = form[key]
    items = item if isinstance(item, list) else [item]
    for field in items:
        if field.filename:
            data = field.file.read()
            print(f"<li>{html.escape(key)}: file {html.escape(field.filename)} "
                  f"{len(data)} bytes sha256={hashlib.sha256(data).hexdigest()}</li>")
        else:
            print(f"<li>{html.escape(key)} = {html.escape(field.value)}</li>")
print("</ul>")
