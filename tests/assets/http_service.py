"""A small HTTP API for the stack tests: GET /healthz answers 200 and
/hello says hello. Port from argv[1]. While the file named by $SLOW_FILE
exists, /healthz answers after the seconds it holds (a slow server)."""

import http.server
import os
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        slow = os.environ.get("SLOW_FILE")
        if self.path == "/healthz" and slow:
            try:
                with open(slow) as f:
                    time.sleep(float(f.read()))
            except FileNotFoundError:
                pass
        body = b"ok\n" if self.path == "/healthz" else b"hello\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print(f"listening on {sys.argv[1]}", flush=True)
server.serve_forever()
