"""gitreceive: every Python process of an app sees the app.

Python imports this module at start-up because the instance's environment
puts its directory on PYTHONPATH: the web process, `run` and update_fetch
scripts, workers, and whatever they start in turn (they inherit the
environment). It does what Silver Lining did for every process of an app:

- the release's lib/python (and lib/pythonX.Y/site-packages) become site
  directories, ahead of the system's packages, so their .pth files count;
- lib/python/silvercustomize.py, when the app has one, is imported (the
  Silver Lining tutorial sets DJANGO_SETTINGS_MODULE there);
- the `silversupport` compatibility package beside this file is importable.

The release is named by SILVER_APP_DIR, which the node agent sets. Written
by gitreceive's node agent; edits are lost.
"""
import os
import sys


def _gitreceive_site():
    release = os.environ.get("SILVER_APP_DIR", "")
    if not release or not os.path.isdir(release):
        return
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
        import silvercustomize  # noqa: F401  (its import is the point)


def _gitreceive_chain():
    # Only the first sitecustomize on sys.path is imported; the system's
    # own (Debian's /etc/python3.X/sitecustomize.py) still runs after ours.
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.origin is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


_gitreceive_site()
_gitreceive_chain()
