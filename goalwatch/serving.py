"""Run a service's FastAPI app under uvicorn, with a clear error for a taken port."""

from __future__ import annotations

import errno
import socket
import sys

import uvicorn
from fastapi import FastAPI


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def port_taken_message(what: str, host: str, port: int, env_var: str) -> str:
    """The one wording for a taken port, naming the variable that moves it."""
    return (
        f"{what} cannot listen on {host}:{port}: the port is already in use. "
        f"Stop whatever holds it, or choose another port with {env_var}=<port>."
    )


def serve(app: FastAPI, *, host: str, port: int, service: str, env_var: str) -> None:
    """Serve ``app`` until SIGINT/SIGTERM; exit 2 with a clear message if the port is taken."""
    if not port_free(host, port):
        message = port_taken_message(f"the {service} service", host, port, env_var)
        print(f"goalwatch: {message}", file=sys.stderr)
        raise SystemExit(2)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
