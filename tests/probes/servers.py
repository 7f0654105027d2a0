"""The Linux kernel target's services, as tunhost serves them: TCP echo 7, UDP echo 7, HTTP 80.

Runs in the target's network namespace (run.sh starts it there, and kills it by PID).
"""

import http.server
import socket
import socketserver
import tempfile
import threading


class Echo(socketserver.BaseRequestHandler):
    """RFC 862 over TCP: send back what arrives until the peer closes."""

    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def udp_echo():
    """RFC 862 over UDP: send each datagram back."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("192.0.2.2", 7))
    while True:
        data, peer = s.recvfrom(65536)
        s.sendto(data, peer)


def main():
    threading.Thread(target=udp_echo, daemon=True).start()
    threading.Thread(target=Server(("192.0.2.2", 7), Echo).serve_forever, daemon=True).start()
    root = tempfile.mkdtemp(prefix="probes-www-")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=root)
    httpd = http.server.ThreadingHTTPServer(("192.0.2.2", 80), handler)
    print("serving", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
