#!/usr/bin/env python3
"""An OTLP receiver for sonde's tests, independent of sonde's own code.

It decodes requests with the official `opentelemetry-proto` Python package:
gRPC through grpcio's generated services, OTLP/HTTP (protobuf bodies)
through a plain http.server handler. Every request is written, before it
is answered, as one JSON line (protobuf's MessageToDict) to --out:

    {"n": 1, "time": 1700000000.1, "transport": "grpc", "signal": "metrics",
     "outcome": "ok", "headers": {...}, "content_encoding": "gzip",
     "body_bytes": 812, "decoded_bytes": 3301, "request": {...}}

Failure injection, counted over requests of both transports in arrival order:
  --fail-first N      answer UNAVAILABLE (gRPC) / 503 (HTTP) to the first N
  --retry-after S     ... and ask the client to wait S seconds (gRPC RetryInfo
                      in grpc-status-details-bin, HTTP Retry-After)
  --reject LIST       answer INVALID_ARGUMENT / 400 to these request numbers
                      (1-based, comma-separated)
  --partial N         accept, but report N rejected items (partial success)
  --server-error LIST answer INTERNAL (gRPC) / 500 (HTTP) to these request numbers
  --garbage LIST      (HTTP) answer 200, application/x-protobuf, with bytes that
                      are not an export response, to these request numbers
  --html LIST         (HTTP) answer 200 with an HTML page to these request numbers
  --unavailable-from N  answer UNAVAILABLE / 503 to request N and every later one

Once listening it prints one line, {"grpc": PORT, "http": PORT}, to stdout.
Needs: grpcio, opentelemetry-proto, protobuf (the .venv cargo xtask makes).
"""

import argparse
import gzip
import json
import ssl
import sys
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as logs_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as profiles_pb
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2_grpc as profiles_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc

# signal -> (request type, response type, partial-success class, its count field)
SIGNALS = {
    "metrics": (metrics_pb.ExportMetricsServiceRequest, metrics_pb.ExportMetricsServiceResponse,
                metrics_pb.ExportMetricsPartialSuccess, "rejected_data_points"),
    "logs": (logs_pb.ExportLogsServiceRequest, logs_pb.ExportLogsServiceResponse,
             logs_pb.ExportLogsPartialSuccess, "rejected_log_records"),
    "traces": (trace_pb.ExportTraceServiceRequest, trace_pb.ExportTraceServiceResponse,
               trace_pb.ExportTracePartialSuccess, "rejected_spans"),
    "profiles": (profiles_pb.ExportProfilesServiceRequest, profiles_pb.ExportProfilesServiceResponse,
                 profiles_pb.ExportProfilesPartialSuccess, "rejected_profiles"),
}
HTTP_PATHS = {
    "/v1/metrics": "metrics",
    "/v1/logs": "logs",
    "/v1/traces": "traces",
    "/v1development/profiles": "profiles",
}


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, wire_type, payload):
    if wire_type == 0:
        return varint(number << 3) + varint(payload)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def retry_info_status(code, message, seconds):
    """A google.rpc.Status carrying a google.rpc.RetryInfo, encoded by hand:
    the generated classes live in googleapis-common-protos, which the test
    environment does not install for four fields."""
    duration = field(1, 0, int(seconds)) + field(2, 0, int((seconds % 1) * 1e9))
    retry_info = field(1, 2, duration)
    detail = field(1, 2, b"type.googleapis.com/google.rpc.RetryInfo") + field(2, 2, retry_info)
    return field(1, 0, code) + field(2, 2, message.encode()) + field(3, 2, detail)


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.count = 0
        self.reject = {int(n) for n in args.reject.split(",") if n}
        self.server_error = {int(n) for n in args.server_error.split(",") if n}
        self.garbage = {int(n) for n in args.garbage.split(",") if n}
        self.html = {int(n) for n in args.html.split(",") if n}
        self.out = open(args.out, "a", buffering=1)

    def handle(self, transport, signal, request, headers, body_bytes, content_encoding):
        """Records one request and says how to answer it."""
        with self.lock:
            self.count += 1
            n = self.count
            if n <= self.args.fail_first or 0 < self.args.unavailable_from <= n:
                outcome = "unavailable"
            elif n in self.reject:
                outcome = "invalid"
            elif n in self.server_error:
                outcome = "server_error"
            elif n in self.garbage:
                outcome = "garbage"
            elif n in self.html:
                outcome = "html"
            else:
                outcome = "ok"
            line = {
                "n": n,
                "time": time.time(),
                "transport": transport,
                "signal": signal,
                "outcome": outcome,
                "headers": headers,
                "content_encoding": content_encoding,
                "body_bytes": body_bytes,
                "decoded_bytes": request.ByteSize(),
                "request": MessageToDict(request, preserving_proto_field_name=True),
            }
            self.out.write(json.dumps(line) + "\n")
            self.out.flush()
        return outcome

    def response(self, signal):
        _, response_type, partial_type, count_field = SIGNALS[signal]
        if self.args.partial:
            partial = partial_type(error_message="rejected by the test receiver")
            setattr(partial, count_field, self.args.partial)
            return response_type(partial_success=partial)
        return response_type()


def grpc_handler(state, signal):
    def export(request, context):
        headers = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        outcome = state.handle("grpc", signal, request, headers, request.ByteSize(), headers.get("grpc-encoding"))
        if outcome == "unavailable":
            if state.args.retry_after is not None:
                status = retry_info_status(14, "test receiver: unavailable", state.args.retry_after)
                context.set_trailing_metadata((("grpc-status-details-bin", status),))
            context.set_code(grpc.StatusCode.UNAVAILABLE)
            context.set_details("test receiver: unavailable")
            return SIGNALS[signal][1]()
        if outcome == "invalid":
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            context.set_details("test receiver: invalid argument")
            return SIGNALS[signal][1]()
        if outcome == "server_error":
            context.set_code(grpc.StatusCode.INTERNAL)
            context.set_details("test receiver: internal error")
            return SIGNALS[signal][1]()
        return state.response(signal)

    return export


def start_grpc(state, port, credentials):
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_receive_message_length", state.args.max_message_bytes)],
    )
    for signal, servicer_base, add in [
        ("metrics", metrics_grpc.MetricsServiceServicer, metrics_grpc.add_MetricsServiceServicer_to_server),
        ("logs", logs_grpc.LogsServiceServicer, logs_grpc.add_LogsServiceServicer_to_server),
        ("traces", trace_grpc.TraceServiceServicer, trace_grpc.add_TraceServiceServicer_to_server),
        ("profiles", profiles_grpc.ProfilesServiceServicer, profiles_grpc.add_ProfilesServiceServicer_to_server),
    ]:
        servicer = type(signal, (servicer_base,), {"Export": staticmethod(grpc_handler(state, signal))})()
        add(servicer, server)
    address = f"127.0.0.1:{port}"
    bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if bound == 0:
        sys.exit(f"cannot listen on {address}")
    server.start()
    return server, bound


def http_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, code, body=b"", content_type="text/plain", extra=()):
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if state.args.delay:
                time.sleep(state.args.delay)
            signal = HTTP_PATHS.get(self.path)
            if signal is None:
                return self.reply(404, b"unknown path")
            if self.headers.get("Content-Type") != "application/x-protobuf":
                return self.reply(415, b"not protobuf")
            encoding = self.headers.get("Content-Encoding")
            body = gzip.decompress(raw) if encoding == "gzip" else raw
            request = SIGNALS[signal][0]()
            request.ParseFromString(body)
            headers = {k.lower(): v for k, v in self.headers.items()}
            outcome = state.handle("http", signal, request, headers, len(raw), encoding)
            if outcome == "unavailable":
                extra = [] if state.args.retry_after is None else [("Retry-After", str(int(state.args.retry_after)))]
                return self.reply(503, b"test receiver: unavailable", extra=extra)
            if outcome == "invalid":
                return self.reply(400, b"test receiver: invalid argument")
            if outcome == "server_error":
                return self.reply(500, b"test receiver: internal error")
            if outcome == "garbage":
                return self.reply(200, b"\xff\xff\xff\xff garbage", "application/x-protobuf")
            if outcome == "html":
                return self.reply(200, b"<html><body>Welcome to nginx!</body></html>", "text/html")
            return self.reply(200, state.response(signal).SerializeToString(), "application/x-protobuf")

        def log_message(self, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grpc", type=int, help="gRPC port (0: any free one)")
    parser.add_argument("--http", type=int, help="HTTP port (0: any free one)")
    parser.add_argument("--out", required=True, help="JSON-lines file, appended to")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--retry-after", type=float)
    parser.add_argument("--reject", default="")
    parser.add_argument("--partial", type=int, default=0)
    parser.add_argument("--server-error", default="")
    parser.add_argument("--garbage", default="")
    parser.add_argument("--html", default="")
    # Seconds to wait before answering each HTTP export: a receiver slower
    # than its sender, so a backlog builds up behind it.
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--unavailable-from", type=int, default=0)
    parser.add_argument("--max-message-bytes", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--tls-cert", help="PEM certificate: serve TLS")
    parser.add_argument("--tls-key", help="PEM key of --tls-cert")
    args = parser.parse_args()
    state = State(args)
    ports = {}
    servers = []
    if args.grpc is not None:
        credentials = None
        if args.tls_cert:
            with open(args.tls_key, "rb") as k, open(args.tls_cert, "rb") as c:
                credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
        server, ports["grpc"] = start_grpc(state, args.grpc, credentials)
        servers.append(server)
    if args.http is not None:
        ThreadingHTTPServer.allow_reuse_address = True
        httpd = ThreadingHTTPServer(("127.0.0.1", args.http), http_handler(state))
        if args.tls_cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(args.tls_cert, args.tls_key)
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        ports["http"] = httpd.server_address[1]
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print(json.dumps(ports), flush=True)
    # Until killed: tests stop it with SIGKILL or SIGTERM.
    threading.Event().wait()


if __name__ == "__main__":
    main()
