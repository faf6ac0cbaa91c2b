"""Side-by-side benchmark of cgirt against classic CGI, bare WSGI on flup and PHP-FPM (issue 5)."""
