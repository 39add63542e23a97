#!/usr/bin/env python3
"""python-counter: the counter of examples/counter (counter-app) as a Python app on the standard
library's http.server, following README's app contract: the same endpoints, answers, journal,
digest hash (FNV-1a over each entry's compact JSON) and snapshots, so its replicas can be compared
with counter-app's (whose digest also has "duplicates", of a test mode). One difference: a request
without Log-Index (not replicated) may only read: a write is refused with 403 (counter-app applies
it, for benchmarks), since it would make this replica differ from the others. Run it behind
k8shmir-proxy:

    python3 examples/python-counter/server.py --port 3000        # or PORT=3000 HOST=127.0.0.1
    k8shmir-proxy --app-port 3000 --listen-port 8080 --etcd-endpoints 127.0.0.1:2379

HTTP/1.1 (protocol_version): http.server's default HTTP/1.0 closes the connection after every
response, and the proxy never sends an entry on a connection that may close. The server is a
ThreadingHTTPServer only so that connections do not wait for each other (a plain HTTPServer serves
one connection until it closes, and the proxy keeps its own open for good, so nothing else, not
even a direct read, would be answered); every request is applied under one lock, one at a time.
The proxy sends entries on one connection, whose requests http.server handles strictly one after
the other: the order of the log is the order they are applied in, which "pipelining": true
declares.
"""
import http.client
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# http.server answers a request of more than 100 header lines with 431 itself, before any handler
# could record its Log-Index; the proxy passes heads up to its --header-limit (64 KiB by default;
# with a larger one, a single line over 64 KiB is still refused here).
http.client._MAXHEADERS = 1 << 16

INT64 = 1 << 63
FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3


def wrap(v):  # int64 wrap-around, like counter-app's arithmetic
    return (v + INT64) % (1 << 64) - INT64


def compact(doc):  # as nlohmann::json's dump(): sorted keys, no spaces, UTF-8 as is
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def fnv1a(h, text):
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


class Counter:
    """The replicated state; every method runs under the server's lock."""

    def __init__(self):
        self.value, self.journal, self.count, self.hash = 0, [], 0, FNV_OFFSET
        self.last_index = 0  # the Log-Index of the last replicated request applied
        self.violations = 0  # requests refused for a stale or malformed Log-Index

    def record(self, entry):
        self.journal.append(entry)
        self.count += 1
        self.hash = fnv1a(self.hash, compact(entry) + "\n")

    def handle(self, method, path, header, body):
        if method == "GET" and path == "/last-index":
            return 200, {"index": self.last_index, "pipelining": True, "snapshots": True}, {}
        if path == "/snapshot":
            if method == "GET":
                state = {"count": self.count, "hash": "%016x" % self.hash,
                         "journal": self.journal, "value": self.value}
                return 200, state, {"Log-Index": str(self.last_index)}
            if method == "PUT":
                return self.restore(header, body)
            return 405, {"error": "GET or PUT /snapshot"}, {}
        index = 0  # 0: not replicated (a direct read)
        if header is not None:
            m = re.fullmatch(r"[ \t]*(-?[0-9]+)[ \t]*", header)
            if not m or not -INT64 <= int(m[1]) < INT64:
                self.violations += 1
                return 400, {"error": "invalid Log-Index header: '%s'" % header}, {}
            if int(m[1]) <= self.last_index:
                self.violations += 1
                return 409, {"error": "stale Log-Index", "index": int(m[1]),
                             "last_index": self.last_index}, {}
            # Every replicated request advances it, reads and errors included.
            index = self.last_index = int(m[1])
        elif method not in ("GET", "HEAD"):
            return 403, {"error": "a write needs a Log-Index header: send it through the proxy"}, {}
        if path == "/integer" and method == "GET":
            return 200, {"value": self.value}, {}
        if path == "/integer" and method == "POST":
            return self.integer_op(body, index)
        if path == "/integer/reset" and method == "POST":
            self.value = 0
            self.record({"index": index, "op": "RESET"})
            return 200, {"value": 0, "index": index}, {}
        if path == "/journal" and method == "GET":
            return 200, {"entries": self.journal}, {}
        if path == "/journal" and method == "POST":
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                return 400, {"error": "the body is not UTF-8 text"}, {}
            self.record({"index": index, "op": "APPEND", "text": text})
            return 200, {"length": len(self.journal), "index": index}, {}
        if path == "/journal/digest" and method == "GET":
            return 200, {"count": self.count, "hash": "%016x" % self.hash, "value": self.value,
                         "last_index": self.last_index, "violations": self.violations}, {}
        return 404, {"error": "no such endpoint"}, {}

    def integer_op(self, body, index):
        try:
            doc = json.loads(body.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            doc = None
        if not isinstance(doc, dict):
            return 400, {"error": "body is not a JSON object"}, {}
        op = doc.get("op")
        if not isinstance(op, str):
            return 400, {"error": "missing string field 'op'"}, {}
        if op not in ("INC", "DEC", "MUL", "SET"):
            return 400, {"error": "unknown op '%s'" % op}, {}
        operand = 1  # INC and DEC default to 1; MUL and SET need a value
        if "value" not in doc:
            if op in ("MUL", "SET"):
                return 400, {"error": "missing integer field 'value'"}, {}
        elif type(doc["value"]) is int and -INT64 <= doc["value"] < INT64:  # bool is no int here
            operand = doc["value"]
        else:
            return 400, {"error": "'value' must be a 64-bit signed integer"}, {}
        if op == "INC":
            self.value = wrap(self.value + operand)
        elif op == "DEC":
            self.value = wrap(self.value - operand)
        elif op == "MUL":
            self.value = wrap(self.value * operand)
        else:
            self.value = operand
        self.record({"index": index, "op": op, "value": operand})
        return 200, {"value": self.value, "index": index}, {}

    def restore(self, header, body):
        if header is None or not re.fullmatch(r"[0-9]+", header.strip(" \t")):
            return 400, {"error": "PUT /snapshot needs a Log-Index header"}, {}
        try:
            doc = json.loads(body.decode("utf-8"))
        except ValueError:
            doc = None
        value, journal = (doc.get("value"), doc.get("journal")) if isinstance(doc, dict) else (0, 0)
        if type(value) is not int or not -INT64 <= value < INT64 or type(journal) is not list:
            return 400, {"error": "not a counter snapshot"}, {}
        self.value, self.journal, self.count, self.hash = value, [], 0, FNV_OFFSET
        for entry in journal:
            self.record(entry)
        # A snapshot of a --journal-keep counter-app carries what its kept entries cannot give.
        if re.fullmatch(r"[0-9a-f]{16}", str(doc.get("hash"))) and type(doc.get("count")) is int:
            self.hash, self.count = int(doc["hash"], 16), doc["count"]
        self.last_index = int(header)
        return 200, {"index": self.last_index}, {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # the head and the body are two writes

    def __getattr__(self, name):  # do_GET, do_POST, do_DELETE, ...: every method reaches serve()
        if name.startswith("do_"):
            return self.serve
        raise AttributeError(name)

    def serve(self):
        if "Transfer-Encoding" in self.headers:  # the proxy always sends a Content-Length
            self.close_connection = True
            status, doc, extra = 400, {"error": "chunked bodies are not supported"}, {}
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with self.server.lock:
                status, doc, extra = self.server.counter.handle(
                    self.command, self.path.split("?")[0], self.headers.get("Log-Index"), body)
        data = compact(doc).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_request(self, code="-", size="-"):  # one line per request is too much; errors stay
        pass


def option(name, default):
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        if arg == "--" + name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--%s=" % name):
            return arg.split("=", 1)[1]
    return default


if __name__ == "__main__":
    host = option("host", os.environ.get("HOST", "127.0.0.1"))
    port = int(option("port", os.environ.get("PORT", "3000")))
    server = ThreadingHTTPServer((host, port), Handler)
    server.lock, server.counter = threading.Lock(), Counter()
    print("python-counter listening on %s:%d" % (host, port), file=sys.stderr, flush=True)
    server.serve_forever()
