"""A dependency-free WSGI app standing in for a Django project."""
import os

import tinylib


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/health":
        body = b"ok"
    else:
        greeting = os.environ.get("CONFIG_GREETING", "hello")
        body = ("%s (%s)\n" % (greeting, tinylib.VERSION)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
