#!/usr/bin/python3
"""A typical small CGI form handler: parse several values, escape, render ~2 KB of HTML."""
import cgi
import datetime
import html
import json

form = cgi.FieldStorage()
name = form.getfirst("name", "stranger")
tags = form.getlist("tag")
comment = form.getfirst("comment", "")
try:
    count = max(1, min(int(form.getfirst("n", "12")), 50))
except ValueError:
    count = 12

now = datetime.datetime.now(datetime.timezone.utc)
summary = json.dumps({"name": name, "tags": tags, "rows": count, "at": now.isoformat()},
                     sort_keys=True)
rows = "\n".join(
    f"<tr><td>{i}</td><td>{html.escape(name)}</td><td>{html.escape(tags[i % len(tags)] if tags else '-')}</td></tr>"
    for i in range(count)
)
print("Content-Type: text/html; charset=utf-8")
print()
print(f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Hello, {html.escape(name)}</title></head>
<body>
<h1>Hello, {html.escape(name)}</h1>
<p>Rendered {now.strftime("%A %d %B %Y, %H:%M:%S %Z")}.</p>
<p>Your comment: <q>{html.escape(comment)}</q></p>
<table>
{rows}
</table>
<script type="application/json" id="summary">{html.escape(summary)}</script>
</body></html>""")
