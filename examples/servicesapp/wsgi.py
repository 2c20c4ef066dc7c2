"""Writes one row / key / file per /hit to each service it asked for in
app.ini and reports what it sees; connection details come only from the
CONFIG_* variables gitreceive hands it."""
import json
import os

import psycopg2
import pymysql
import redis

SECRET = ("PASSWORD", "URL", "SQLALCHEMY")


def pg():
    return psycopg2.connect(
        dbname=os.environ["CONFIG_PG_DBNAME"], user=os.environ["CONFIG_PG_USER"],
        password=os.environ["CONFIG_PG_PASSWORD"], host=os.environ["CONFIG_PG_HOST"],
        port=os.environ["CONFIG_PG_PORT"], connect_timeout=5)


def my():
    return pymysql.connect(
        database=os.environ["CONFIG_MYSQL_DBNAME"], user=os.environ["CONFIG_MYSQL_USER"],
        password=os.environ["CONFIG_MYSQL_PASSWORD"], host=os.environ["CONFIG_MYSQL_HOST"],
        port=int(os.environ["CONFIG_MYSQL_PORT"]), connect_timeout=5, autocommit=True)


def rd():
    return redis.Redis.from_url(os.environ["CONFIG_REDIS_URL"], socket_timeout=5)


def has(var):
    return var in os.environ


def hit(node):
    if has("CONFIG_PG_DBNAME"):
        with pg() as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS hits (id serial PRIMARY KEY, node text, at geometry(Point, 4326))")
            cur.execute("INSERT INTO hits (node, at) VALUES (%s, ST_SetSRID(ST_MakePoint(2.35, 48.85), 4326))", (node,))
        conn.close()
    if has("CONFIG_MYSQL_DBNAME"):
        conn = my()
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS hits (id INT AUTO_INCREMENT PRIMARY KEY, node VARCHAR(64))")
            cur.execute("INSERT INTO hits (node) VALUES (%s)", (node,))
        conn.close()
    if has("CONFIG_REDIS_URL"):
        rd().incr("hits")
    if has("CONFIG_FILES"):
        with open(os.path.join(os.environ["CONFIG_FILES"], "hits.log"), "a") as f:
            f.write(node + "\n")
    if has("CONFIG_WRITABLE_ROOT"):
        with open(os.path.join(os.environ["CONFIG_WRITABLE_ROOT"], "hits.txt"), "a") as f:
            f.write(node + "\n")


def counts():
    out = {}
    if has("CONFIG_PG_DBNAME"):
        with pg() as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('hits') IS NOT NULL")
            out["postgis"] = 0
            if cur.fetchone()[0]:
                cur.execute("SELECT count(*) FROM hits")
                out["postgis"] = cur.fetchone()[0]
            cur.execute("SELECT PostGIS_Version()")
            out["postgis_version"] = cur.fetchone()[0]
        conn.close()
    if has("CONFIG_MYSQL_DBNAME"):
        conn = my()
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'hits'")
            out["mysql"] = 0
            if cur.fetchone()[0]:
                cur.execute("SELECT count(*) FROM hits")
                out["mysql"] = cur.fetchone()[0]
        conn.close()
    if has("CONFIG_REDIS_URL"):
        out["redis"] = int(rd().get("hits") or 0)
    if has("CONFIG_FILES"):
        try:
            with open(os.path.join(os.environ["CONFIG_FILES"], "hits.log")) as f:
                out["files"] = len(f.readlines())
        except FileNotFoundError:
            out["files"] = 0
    return out


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/health":
        body = "ok"
    elif path == "/hit":
        hit(os.uname().nodename)
        body = json.dumps(counts())
    elif path == "/env":
        # Names and non-secret values only.
        body = json.dumps({k: ("***" if any(s in k for s in SECRET) else v)
                           for k, v in sorted(os.environ.items()) if k.startswith(("CONFIG_", "DATABASE_", "SILVER_"))})
    else:
        body = json.dumps(counts())
    data = body.encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
