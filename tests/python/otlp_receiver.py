"""A small OTLP/HTTP trace receiver for the tracing cases (tests/src/cases/tracing.rs).

Decodes every POST /v1/traces body (application/x-protobuf) with the `opentelemetry-proto`
package, an implementation independent of the gateway's hand-written encoder, and prints one
JSON line per span on stdout:

  {"trace_id", "span_id", "parent_span_id" (hex, "" for a root span), "name", "kind",
   "start", "end" (unix nanoseconds), "status_code", "status_message",
   "attributes": {key: value}, "resource": {key: value}, "scope": name}

The first line is {"listening": PORT}. A body that does not decode is answered 400 and reported
as {"error": TEXT}. Usage: otlp_receiver.py (binds 127.0.0.1:0).
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attrs(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        req = ExportTraceServiceRequest()
        try:
            if self.path != "/v1/traces":
                raise DecodeError("unexpected path " + self.path)
            if self.headers.get("content-type") != "application/x-protobuf":
                raise DecodeError("content-type " + str(self.headers.get("content-type")))
            req.ParseFromString(body)
        except DecodeError as e:
            emit({"error": str(e)})
            self.send_response(400)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        for rs in req.resource_spans:
            resource = attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    emit(
                        {
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "name": s.name,
                            "kind": s.kind,
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "status_code": s.status.code,
                            "status_message": s.status.message,
                            "attributes": attrs(s.attributes),
                            "resource": resource,
                            "scope": ss.scope.name,
                        }
                    )
        out = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    emit({"listening": server.server_address[1]})
    server.serve_forever()


if __name__ == "__main__":
    main()
