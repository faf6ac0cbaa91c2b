"""The development HTTP front end: HTTP/1.1, static files, and the FastCGI gateway to the runner."""
