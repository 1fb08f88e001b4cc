"""An OTLP trace receiver on loopback for tests: what a collector would receive from a gateway.

It speaks both OTLP transports the SDK's exporters use: HTTP (`POST /v1/traces` with a protobuf
`ExportTraceServiceRequest`, gzipped or not) and gRPC (`TraceService/Export`), each on a free
port of 127.0.0.1, and keeps every span it is sent, decoded into a `ReceivedSpan`.
"""

from __future__ import annotations

import contextlib
import gzip
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support.ports import free_port

SPAN_KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUS_CODES = {0: "UNSET", 1: "OK", 2: "ERROR"}


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status: str
    start_ns: int
    end_ns: int
    # Each event as (name, attributes).
    events: tuple[tuple[str, dict[str, Any]], ...]
    # How it came: "http" or "grpc".
    transport: str


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def decode(
    request: trace_service_pb2.ExportTraceServiceRequest, transport: str
) -> list[ReceivedSpan]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=SPAN_KINDS.get(span.kind, "UNSPECIFIED"),
                        attributes=_attributes(span.attributes),
                        resource=resource,
                        status=STATUS_CODES.get(span.status.code, "UNSET"),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        events=tuple(
                            (event.name, _attributes(event.attributes)) for event in span.events
                        ),
                        transport=transport,
                    )
                )
    return spans


class OtlpReceiver:
    """Both transports, one store of spans. Use `running()`; endpoints as the exporters take
    them: `http_endpoint` (a base URL) and `grpc_endpoint`."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        # The raw bytes of every export, to look for a string anywhere in them.
        self.payloads: list[bytes] = []
        self.exports = 0
        self._lock = threading.Lock()
        self.http_port = free_port()
        self.grpc_port = free_port()

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def receive(self, payload: bytes, transport: str) -> None:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(payload)
        with self._lock:
            self.payloads.append(payload)
            self.spans.extend(decode(request, transport))
            self.exports += 1

    def clear(self) -> None:
        with self._lock:
            self.spans.clear()
            self.payloads.clear()
            self.exports = 0

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def wait_for(
        self, found: Callable[[list[ReceivedSpan]], bool], timeout: float = 15.0
    ) -> list[ReceivedSpan]:
        """Every span received once `found(spans)` holds; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if found(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({span.name for span in spans})
                raise AssertionError(f"spans not received in {timeout}s; got {names}")
            time.sleep(0.05)

    @contextlib.contextmanager
    def running(self) -> Iterator[OtlpReceiver]:
        http = ThreadingHTTPServer(("127.0.0.1", self.http_port), _handler(self))
        http.daemon_threads = True
        http_thread = threading.Thread(target=http.serve_forever, daemon=True)
        http_thread.start()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Servicer(self), server)
        server.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        server.start()
        try:
            yield self
        finally:
            server.stop(grace=None)
            http.shutdown()
            http.server_close()


class _Servicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver.receive(request.SerializeToString(), "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            receiver.receive(body, "http")
            answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
