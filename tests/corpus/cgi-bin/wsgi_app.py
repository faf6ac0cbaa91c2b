#!/usr/bin/env python3
"""A Flask-style WSGI application (routes, JSON, 404), run through wsgiref's CGIHandler."""
import json
from wsgiref.handlers import CGIHandler

ROUTES = {}

def route(path):
    def register(view):
        ROUTES[path] = view
        return view
    return register

@route("/")
def index(environ):
    return "200 OK", "text/html", "<h1>index</h1>"

@route("/api")
def api(environ):
    return "200 OK", "application/json", json.dumps({"query": environ.get("QUERY_STRING", "")})

def app(environ, start_response):
    view = ROUTES.get(environ.get("PATH_INFO") or "/")
    if view is None:
        status, ctype, body = "404 Not Found", "text/plain", "no route"
    else:
        status, ctype, body = view(environ)
    data = body.encode()
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(data)))])
    return [data]

CGIHandler().run(app)
