"""cgirt: ordinary CGI scripts in persistent FastCGI workers."""

__version__ = "0.1.0"
