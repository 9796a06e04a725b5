#!/usr/bin/env python3
"""http_fixture_server.py — a local HTTP server for tests/test_fetch_assets.sh.

    python3 tests/http_fixture_server.py --dir DIR --port-file F --log L

Binds 127.0.0.1 on a free port (written to F once listening) and serves the
files of DIR under paths that choose a behaviour:

  /files/NAME            the file; Range requests answered with 206
  /trunc/NAME            the first request for NAME gets the full Content-Length
                         but only half the bytes, then the connection closes;
                         later requests behave as /files/ (so a client resumes)
  /norange/NAME          ignores Range (always 200, the whole file); the first
                         request is truncated as in /trunc/
  /redirect/NAME         302 to /files/NAME
  /html/NAME             200 with an HTML error page
  /quota/NAME            200 with Google Drive's "quota exceeded" page
  /gdrive/uc?id=NAME[&style=link]
                         Google Drive's "can't scan for viruses" interstitial:
                         a download form (action /gdrive/download, hidden id,
                         export, confirm, uuid), or with style=link an old-style
                         page with a confirm= link and a download_warning cookie
  /gdrive/download?id=NAME&confirm=t&uuid=U   the file (needs confirm and uuid)
  /gdrive/uc?id=NAME&confirm=TOKEN            the file (needs the cookie's token)

Every request is logged to L as "METHOD PATH RANGE" (RANGE '-' when none).
Standard library only.
"""
import argparse
import http.server
import os
import socketserver
import threading
import urllib.parse

TOKEN = "Xy7_tok"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    counts = {}
    lock = threading.Lock()

    def log_message(self, fmt, *args):
        pass

    def _log(self):
        with self.lock, open(self.server.log, "a") as f:
            f.write(f"{self.command} {self.path} {self.headers.get('Range') or '-'}\n")

    def _count(self, key):
        with self.lock:
            n = self.counts.get(key, 0)
            self.counts[key] = n + 1
        return n

    def _page(self, code, body, extra=()):
        b = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(b)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(b)

    def _file(self, name, ranges=True, truncate=False):
        path = os.path.join(self.server.dir, os.path.basename(name))
        if not os.path.isfile(path):
            return self._page(404, "<html><body>404 not found</body></html>")
        data = open(path, "rb").read()
        start = 0
        rng = self.headers.get("Range")
        if ranges and rng and rng.startswith("bytes="):
            s = rng[6:].split("-")[0]
            start = int(s) if s else 0
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes" if ranges else "none")
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        if truncate:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        self.wfile.write(body)

    def do_GET(self):
        self._log()
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        parts = u.path.strip("/").split("/", 1)
        kind, name = parts[0], parts[1] if len(parts) > 1 else ""
        if kind == "files":
            return self._file(name)
        if kind == "trunc":
            return self._file(name, truncate=self._count(self.path) == 0)
        if kind == "norange":
            return self._file(name, ranges=False, truncate=self._count(self.path) == 0)
        if kind == "redirect":
            self.send_response(302)
            self.send_header("Location", "/files/" + name)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if kind == "html":
            return self._page(200, "<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>"
                                   "<body><h1>Sorry</h1></body></html>\n")
        if kind == "quota":
            return self._page(200, "<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>"
                                   "<body><p>Too many users have viewed or downloaded this file recently. Please "
                                   "try accessing the file again later.</p></body></html>\n")
        if kind == "gdrive" and name == "uc":
            fid = q.get("id", "")
            if q.get("confirm") == TOKEN and TOKEN in (self.headers.get("Cookie") or ""):
                return self._file(fid)
            if q.get("style") == "link":
                return self._page(200, "<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning"
                                       "</title></head><body><a id=\"uc-download-link\" href=\"/gdrive/uc?export="
                                       f"download&amp;confirm={TOKEN}&amp;id={fid}\">Download anyway</a>"
                                       "</body></html>\n",
                                  [("Set-Cookie", f"download_warning_123_{fid}={TOKEN}; Path=/")])
            return self._page(200, "<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>"
                                   "</head><body><p>Google Drive can't scan this file for viruses.</p>"
                                   "<form id=\"download-form\" action=\"/gdrive/download\" method=\"get\">"
                                   "<input type=\"submit\" id=\"uc-download-link\" value=\"Download anyway\"/>"
                                   f"<input type=\"hidden\" name=\"id\" value=\"{fid}\">"
                                   "<input type=\"hidden\" name=\"export\" value=\"download\">"
                                   "<input type=\"hidden\" name=\"confirm\" value=\"t\">"
                                   "<input type=\"hidden\" name=\"uuid\" value=\"0c6e-uuid\"></form>"
                                   "</body></html>\n")
        if kind == "gdrive" and name == "download":
            if q.get("confirm") == "t" and q.get("uuid") == "0c6e-uuid":
                return self._file(q.get("id", ""))
            return self._page(403, "<html><body>missing confirmation</body></html>")
        return self._page(404, "<html><body>404 not found</body></html>")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    srv.dir, srv.log = a.dir, a.log
    open(a.log, "a").close()
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.replace(tmp, a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
