"""Serves a WSGI application for Portico's local runtime (Valohai's `wsgi: module[:callable]`).

Usage: python3 wsgi_runner.py [--host H] [--port P] [--server auto|wsgiref|gunicorn] module[:callable]

The callable defaults to `application`. The working directory (the version's code) is first on
sys.path. With `--server auto` (the default; `PORTICO_WSGI_SERVER` in the environment sets
another) gunicorn serves the app when the version's Python has it (one process, gthread workers
with 8 threads), else the standard library's wsgiref with one thread per connection, kept alive
between requests (see Responder and ThreadingServer).
`SCRIPT_NAME` from the environment (Portico sets it to VH_DEFAULT_PREFIX) is split off the
request path, so the app sees PATH_INFO relative to its prefix, under either server (under
gunicorn it is taken out of os.environ, where gunicorn would apply it itself). Request headers
whose names hold an underscore are dropped, and a HEAD response carries no body (even if the app
returns one), under either server. Requests are not logged unless PORTICO_WSGI_ACCESS_LOG=1 (the
gateway logs them). An IPv6 `--host` (`::`, for pods with IPv6 addresses only) listens on IPv6,
and on IPv4 too where the kernel maps it. Standard library only, besides gunicorn when used.
"""

import argparse
import importlib
import importlib.util
import io
import os
import signal
import socket
import socketserver
import sys
import threading
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

# How long wsgiref keeps a connection waiting for its next request; it says so in each response's
# Keep-Alive header, so the gateway's pool stops using the connection a second before.
KEEP_ALIVE_SECONDS = 30
# gunicorn sends no Keep-Alive header, so the gateway's pool keeps its connections for its own
# 60 s: gunicorn waits longer, so that the gateway is the side that closes an idle connection
# (a request sent on a connection the replica is closing at that moment would fail).
GUNICORN_KEEP_ALIVE_SECONDS = 75


def load_app(spec):
    module_name, _, attr = spec.partition(":")
    obj = importlib.import_module(module_name)
    for part in (attr or "application").split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError("%s is not callable" % spec)
    return obj


def split_prefix(environ, script_name):
    """Moves `script_name` from the front of PATH_INFO to SCRIPT_NAME; a path outside it stays whole."""
    prefix = script_name.rstrip("/")
    path = environ.get("PATH_INFO", "")
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        environ["SCRIPT_NAME"] = prefix
        environ["PATH_INFO"] = path[len(prefix):]
    else:
        environ["SCRIPT_NAME"] = ""


def read_chunked(rfile):
    body = io.BytesIO()
    while True:
        size_line = rfile.readline(65537)
        if not size_line:
            raise ValueError("truncated chunked body")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size < 0:
            raise ValueError("negative chunk size")
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return body.getvalue()
        body.write(rfile.read(size))
        rfile.readline(65537)  # CRLF after the chunk


class LimitedInput(io.RawIOBase):
    """The request body of `length` bytes on the connection, then end of file (as gunicorn does).

    wsgiref gives the app the socket itself: an app reading wsgi.input whole (or past
    CONTENT_LENGTH) would wait for the client to close the connection, which a keep-alive client
    such as the gateway does not do before the response.
    """

    def __init__(self, rfile, length):
        self.rfile = rfile
        self.remaining = length

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self.rfile.read(min(len(buffer), self.remaining))
        self.remaining -= len(data)
        buffer[: len(data)] = data
        return len(data)

    def drain(self):
        """Reads what the app left of the body: a socket closed with unread bytes sends a reset,
        which may reach the client (still sending the body) before it has read the response."""
        try:
            while self.remaining > 0 and self.read(min(self.remaining, 65536)):
                pass
        except OSError:
            pass


class Responder(ServerHandler):
    """wsgiref's handler answering HTTP/1.1 on a kept-alive connection.

    A body of unknown length goes out chunked: close-delimited (HTTP/1.0), a body cut short by an
    app failing midway would look whole to the gateway; chunked, it lacks the last chunk. The
    connection is kept for the next request only when the response is framed (a Content-Length,
    chunked, or no body at all) and ends whole: one the app fails midway through, or of which it
    sends fewer bytes than its Content-Length, ends with the connection closed, so the client
    sees it cut short; bytes past its Content-Length are not sent (they would be read as the
    next response).
    """

    http_version = "1.1"
    chunked = False
    bodyless = False  # HEAD, or a status without a body: what the app returns is not sent
    length_left = None  # of the Content-Length, while it is sent
    complete = False  # the whole response went out

    def cleanup_headers(self):
        super().cleanup_headers()  # a Content-Length when the body is a one-item list
        self.bodyless = (
            self.environ["REQUEST_METHOD"] == "HEAD" or self.status[:1] == "1" or self.status[:3] in ("204", "304")
        )
        self.chunked = (
            not self.bodyless
            and "Content-Length" not in self.headers
            and self.environ.get("SERVER_PROTOCOL") == "HTTP/1.1"
        )
        if self.chunked:
            self.headers["Transfer-Encoding"] = "chunked"
        elif not self.bodyless and self.headers.get("Content-Length", "").strip().isdigit():
            self.length_left = int(self.headers["Content-Length"])
        request = self.request_handler
        framed = self.bodyless or self.chunked or self.length_left is not None
        if request.close_connection or request.server.closing or not framed:
            request.close_connection = True
            self.headers["Connection"] = "close"
        else:
            self.headers["Keep-Alive"] = "timeout=%d" % KEEP_ALIVE_SECONDS

    def write(self, data):
        if self.status and not self.headers_sent:
            self.bytes_sent = len(data)
            self.send_headers()  # decides `chunked`
            self.bytes_sent = 0
        if self.bodyless:
            return  # the headers a GET would get, no body (wsgiref would send it)
        if self.chunked:
            if data:
                super().write(b"%x\r\n%s\r\n" % (len(data), bytes(data)))
            return
        if self.length_left is not None:
            if len(data) > self.length_left:
                data = data[: self.length_left]
                self.request_handler.close_connection = True
            self.length_left -= len(data)
        super().write(data)

    def finish_content(self):
        super().finish_content()
        if self.chunked:
            self._write(b"0\r\n\r\n")
            self._flush()
        self.complete = not self.length_left
        if self.length_left:
            length = int(self.headers["Content-Length"])
            self.request_handler.log_error("%s", short_body(length - self.length_left, length))


def short_body(sent, length):
    return "the app's body ended after %d of the %d bytes of its Content-Length" % (sent, length)


def access_log_wanted():
    """Whether the runner logs every request: off unless PORTICO_WSGI_ACCESS_LOG=1 in the version's
    environment. The gateway's access log has every request already; a line per request here
    would fill the replica's logs (and their retention) and push out what the app itself prints."""
    return os.environ.get("PORTICO_WSGI_ACCESS_LOG", "") in ("1", "true", "yes")


class Handler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # persistent connections
    script_name = ""
    access_log = False

    def log_request(self, code="-", size="-"):
        # Requests only; errors (log_error) are still logged.
        if self.access_log:
            super().log_request(code, size)

    def get_environ(self):
        for name in {name for name in self.headers.keys() if "_" in name}:
            del self.headers[name]  # see drop_underscore_headers
        env = super().get_environ()
        split_prefix(env, self.script_name)
        return env

    def handle(self):
        # wsgiref's handle() serves one request and closes the connection; this one serves the
        # requests of a kept-alive connection one after another.
        self.close_connection = False
        while not self.close_connection:
            self.handle_one_request()

    def handle_one_request(self):
        # wsgiref's, plus chunked request bodies (the gateway streams bodies of unknown length
        # chunked) and multithread=True. The connection is kept only if the exchange ends cleanly.
        self.close_connection = True
        self.raw_requestline = self.server.next_request_line(self.connection, self.rfile)
        if not self.raw_requestline:
            return
        if len(self.raw_requestline) > 65536:
            self.requestline = ""
            self.request_version = ""
            self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        if self.request_version != "HTTP/1.1":
            self.close_connection = True  # an HTTP/1.0 client would need Connection: keep-alive
        environ = self.get_environ()
        coding = self.headers.get("Transfer-Encoding")
        if coding is None:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length < 0:
                self.send_error(400, "bad Content-Length")
                return
            body = LimitedInput(self.rfile, length)
            stdin = io.BufferedReader(body)
        else:
            if coding.lower().replace(" ", "").split(",")[-1] != "chunked":
                self.send_error(501, "unsupported Transfer-Encoding")
                return
            if environ.get("CONTENT_LENGTH"):
                self.close_connection = True  # both: where the body ends is in doubt
            try:
                whole = read_chunked(self.rfile)
            except ValueError:
                self.send_error(400, "bad chunked body")
                return
            body = LimitedInput(self.rfile, 0)
            stdin = io.BytesIO(whole)
            environ["CONTENT_LENGTH"] = str(len(whole))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        handler = Responder(stdin, self.wfile, self.get_stderr(), environ, multithread=True)
        handler.request_handler = self
        handler.run(self.server.get_app())
        body.drain()
        if not handler.complete or body.remaining:
            self.close_connection = True


class ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    # On SIGTERM, server_close() closes the listening socket and the kept-alive connections
    # waiting for a request; the interpreter then waits for the request threads (not daemons) to
    # answer (Portico kills the replica after its grace period), and their connections close.
    # Not block_on_close: Python 3.7 keeps every request's thread in a list for it, a leak.
    daemon_threads = False
    block_on_close = False
    allow_reuse_address = True
    closing = False

    def server_bind(self):
        # HTTPServer.server_bind calls socket.getfqdn(), a DNS lookup that can hang offline.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port
        self.setup_environ()
        self.idle = set()
        self.idle_lock = threading.Lock()

    def next_request_line(self, connection, rfile):
        """The next request line on `connection`, or b"" once it has been idle for
        KEEP_ALIVE_SECONDS or the runner is stopping (which wakes it)."""
        with self.idle_lock:
            if self.closing:
                return b""
            self.idle.add(connection)
        try:
            connection.settimeout(KEEP_ALIVE_SECONDS)
            line = rfile.readline(65537)
            connection.settimeout(None)
        except OSError:
            line = b""
        with self.idle_lock:
            self.idle.discard(connection)
            if self.closing:
                return b""  # shut down while it waited: what came is not answered
        return line

    def server_close(self):
        super().server_close()
        with self.idle_lock:
            self.closing = True
            for connection in self.idle:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def netloc(host, port):
    """`host:port`, an IPv6 host in brackets."""
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


class ThreadingServer6(ThreadingServer):
    """An IPv6 address (`::`); IPv4 too where the kernel maps it (Linux's default), as gunicorn does."""

    address_family = socket.AF_INET6

    def server_bind(self):
        if hasattr(socket, "IPV6_V6ONLY"):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        ThreadingServer.server_bind(self)


def serve_wsgiref(app, spec, host, port):
    Handler.script_name = os.environ.get("SCRIPT_NAME", "")
    Handler.access_log = access_log_wanted()
    server = (ThreadingServer6 if ":" in host else ThreadingServer)((host, port), Handler)
    server.set_app(app)
    print("portico wsgi runner: serving %s on http://%s (wsgiref, threaded)" % (spec, netloc(host, port)), flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def drop_underscore_headers(cfg):
    """gunicorn drops request headers whose names hold an underscore (as nginx does).

    Header names become environ keys with dashes turned into underscores: `X_VH_Prefix` from a
    client would be merged into HTTP_X_VH_PREFIX, which the gateway sets. gunicorn 22 and later
    drop such headers by default (`header_map`); older ones (Debian's 20.1) are patched here.
    """
    if "header_map" in cfg.settings:
        cfg.set("header_map", "drop")
        return
    from gunicorn.http.message import Message

    parse_headers = Message.parse_headers

    def without_underscores(self, *args, **kwargs):
        return [(name, value) for name, value in parse_headers(self, *args, **kwargs) if "_" not in name]

    Message.parse_headers = without_underscores


def delivered(result, head, declared):
    """The app's body as gunicorn is to send it on a kept-alive connection. For a HEAD, none:
    gunicorn would send what the app returns, and the client would read it as the next response.
    A body ending short of the Content-Length in `declared` raises at its end: gunicorn then
    closes the connection and the client sees the body cut short, instead of waiting for the
    rest. The app's iterable is run (a lazy app calls start_response in it) and closed either way.
    """
    sent = 0
    try:
        for part in result:
            if not head:
                sent += len(part)
                yield part
    finally:
        if hasattr(result, "close"):
            result.close()
    length = declared.get("length")
    if not head and length is not None and sent < length:
        raise ValueError(short_body(sent, length))


def serve_gunicorn(app, spec, host, port):
    from gunicorn.app.base import BaseApplication

    # gunicorn would split SCRIPT_NAME off itself, from the environment at each request, and
    # answer 500 to a path outside it; the prefix is split here instead, as under wsgiref.
    script_name = os.environ.pop("SCRIPT_NAME", "")

    def prefixed(environ, start_response):
        environ["PATH_INFO"] = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        split_prefix(environ, script_name)
        if not environ.get("CONTENT_LENGTH") and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            # As under wsgiref: a chunked body is read whole and given a CONTENT_LENGTH.
            body = environ["wsgi.input"].read()
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        declared = {}

        def start(status, headers, exc_info=None):
            lengths = [value.strip() for name, value in headers if name.lower() == "content-length"]
            bodyless = status[:1] == "1" or status[:3] in ("204", "304")
            declared["length"] = int(lengths[0]) if lengths and lengths[0].isdigit() and not bodyless else None
            return start_response(status, headers, exc_info)

        result = app(environ, start)
        head = environ["REQUEST_METHOD"] == "HEAD"
        if isinstance(result, environ["wsgi.file_wrapper"]) and not head:
            return result  # gunicorn sends it with sendfile
        return delivered(result, head, declared)

    class Runner(BaseApplication):
        def load_config(self):
            settings = {
                "bind": netloc(host, port),
                "worker_class": "gthread",
                "threads": 8,
                "accesslog": "-" if access_log_wanted() else None,
                # The gateway bounds the request line and headers (Node's 16 KiB); gunicorn's
                # lower defaults (4094 and 8190 bytes) would answer 400 to what wsgiref serves.
                "limit_request_line": 0,
                "limit_request_field_size": 0,
                # Portico stops a replica with SIGTERM and SIGKILLs it after its grace period.
                "graceful_timeout": 5,
                # gunicorn's default 2 s would make a lightly used endpoint open a connection per
                # request (see GUNICORN_KEEP_ALIVE_SECONDS).
                "keepalive": GUNICORN_KEEP_ALIVE_SECONDS,
            }
            for key, value in settings.items():
                self.cfg.set(key, value)
            drop_underscore_headers(self.cfg)

        def load(self):
            return prefixed

    print("portico wsgi runner: serving %s on http://%s (gunicorn)" % (spec, netloc(host, port)), flush=True)
    Runner().run()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument(
        "--server", choices=["auto", "wsgiref", "gunicorn"], default=os.environ.get("PORTICO_WSGI_SERVER", "auto")
    )
    parser.add_argument("app", help="module[:callable], callable defaulting to `application`")
    args = parser.parse_args()

    sys.path[0] = os.getcwd()  # the version's code, not this runner's folder
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    use_gunicorn = args.server == "gunicorn" or (
        args.server == "auto" and importlib.util.find_spec("gunicorn") is not None
    )
    # The app is imported here, before any server starts: an import error is the replica's crash.
    app = load_app(args.app)
    if use_gunicorn:
        serve_gunicorn(app, args.app, args.host, args.port)
    else:
        serve_wsgiref(app, args.app, args.host, args.port)


if __name__ == "__main__":
    main()
