"""gitreceive: make a Python process see an app's release.

activate(release) does what Silver Lining did for every process of an app:
the release's lib/python (and lib/pythonX.Y/site-packages) become site
directories, ahead of the system's packages, so their .pth files count; then
lib/python/silvercustomize.py, when the app has one, is imported (the Silver
Lining tutorial sets DJANGO_SETTINGS_MODULE there). The web process calls it
from its bootstrap once the app's environment is loaded; every other Python
process of the app (`run`, update_fetch, workers, whatever they start) gets
it from sitecustomize, as their environment names this directory on
PYTHONPATH and the release in SILVER_APP_DIR.

Written by gitreceive's node agent; edits are lost.
"""
import os
import sys

_activated = None


def activate(release):
    global _activated
    if not release or _activated == release or not os.path.isdir(release):
        return
    _activated = release
    import site

    before = list(sys.path)
    dirs = [
        os.path.join(release, "lib", "python"),
        os.path.join(release, "lib", "python%d.%d" % sys.version_info[:2], "site-packages"),
    ]
    for d in dirs:
        if os.path.isdir(d) and d not in sys.path:
            site.addsitedir(d)
    added = [p for p in sys.path if p not in before]
    sys.path[:] = added + before
    if os.path.isfile(os.path.join(dirs[0], "silvercustomize.py")):
        import silvercustomize  # noqa: F401  (importing it is the point)
