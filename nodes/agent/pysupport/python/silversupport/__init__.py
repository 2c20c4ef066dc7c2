"""Silver Lining's `silversupport` API, as gitreceive provides it.

What Silver Lining apps import from it: silversupport.secret (get_secret,
get_key) and silversupport.env (is_production). Written by gitreceive's node
agent; edits are lost.
"""
