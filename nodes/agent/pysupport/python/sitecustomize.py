"""gitreceive: every Python process of an app sees the app.

Python imports this module at start-up because the app's environment puts
its directory on PYTHONPATH; see gitreceive_site. Written by gitreceive's
node agent; edits are lost.
"""
import os


def _gitreceive_chain():
    # Only the first sitecustomize on sys.path is imported; the system's
    # own (Debian's /etc/python3.X/sitecustomize.py) still runs after ours.
    import importlib.machinery
    import importlib.util
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.origin is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


_gitreceive_chain()
import gitreceive_site  # noqa: E402

gitreceive_site.activate(os.environ.get("SILVER_APP_DIR", ""))
