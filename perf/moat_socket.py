"""One request to moatd's control socket, as a script does it: a JSON line in, a JSON line out."""
import json
import socket


def ask(path, req, timeout=10.0):
    """The reply to `req` (a dict) from the control socket at `path`, parsed."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall((json.dumps(req) + "\n").encode())
        buf = bytearray()
        while not buf.endswith(b"\n"):
            d = s.recv(1 << 20)
            if not d:
                break
            buf += d
        return json.loads(buf)
    finally:
        s.close()
