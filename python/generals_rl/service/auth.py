"""Who may call the server: bearer-token authentication of every call but
health checks, and the TLS credentials the server listens with."""

from __future__ import annotations

import hmac

import grpc

HEALTH_METHOD_PREFIX = "/grpc.health.v1.Health/"


def check_tls(tls: tuple[bytes, bytes]) -> None:
    """ValueError unless ``(certificate_chain, private_key)`` are both PEM."""
    for name, pem, block in zip(
        ("certificate chain", "private key"),
        tls,
        (b"-----BEGIN CERTIFICATE-----", b"PRIVATE KEY-----"),
        strict=True,
    ):
        if not pem.strip():
            raise ValueError(f"tls: the {name} is empty")
        if block not in pem:
            raise ValueError(f"tls: the {name} is not PEM (no {block.decode().strip('-')} block)")


def server_credentials(tls: tuple[bytes, bytes]) -> grpc.ServerCredentials:
    certificate_chain, private_key = tls
    return grpc.ssl_server_credentials([(private_key, certificate_chain)])


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses calls without ``authorization: Bearer <token>`` (health checks
    excepted, so load balancers can probe) with UNAUTHENTICATED."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        def deny(request, context):
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or wrong bearer token (metadata 'authorization')",
            )

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(HEALTH_METHOD_PREFIX):
            return continuation(handler_call_details)
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                if hmac.compare_digest(given, self._expected):
                    return continuation(handler_call_details)
        return self._deny
