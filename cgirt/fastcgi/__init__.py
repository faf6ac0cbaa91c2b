"""FastCGI: the server side the runner speaks (on flup) and the client the development front end uses."""
