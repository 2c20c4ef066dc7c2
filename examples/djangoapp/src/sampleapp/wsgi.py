"""A dependency-free WSGI app standing in for a Django project."""
import os
import time

# Both imports resolve only through lib/python's .pth files, which the
# receiver rewrote to paths inside the release: sampleapp through
# sampleapp.pth (../../src), tinylib through easy-install.pth.
import sampleapp
import tinylib

SHOWN = ("SILVER_", "CONFIG_")


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    status = "200 OK"
    if path == "/health":
        body = "ok"
    elif path == "/env":
        # What the app was handed (a demo: a real app would not show it).
        names = sorted(k for k in os.environ if k.startswith(SHOWN) or k == "TEMP")
        body = "".join("%s=%s\n" % (k, os.environ[k]) for k in names)
        body += "SCRIPT_NAME=%s\nHTTP_HOST=%s\n" % (environ.get("SCRIPT_NAME", ""), environ.get("HTTP_HOST", ""))
    elif path == "/secret":
        with open(os.environ["SILVER_SECRET_FILE"]) as f:
            body = "secret: %d characters\n" % len(f.read().strip())
    elif path == "/sleep":
        seconds = float(environ.get("QUERY_STRING") or "1")
        time.sleep(seconds)
        body = "slept %s\n" % seconds
    else:
        greeting = os.environ.get("CONFIG_GREETING", "hello")
        body = "%s (sampleapp %s, tinylib %s, release %s)\n" % (
            greeting, sampleapp.VERSION, tinylib.VERSION, os.environ.get("SILVER_RELEASE", "?"))
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
