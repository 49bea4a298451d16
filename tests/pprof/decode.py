#!/usr/bin/env python3
"""An independent pprof decoder and Pyroscope ingest receiver for sonde's tests.

It compiles pprof's own profile.proto (from Debian's golang-github-google-pprof-dev)
with protoc and decodes with the Python protobuf runtime, so nothing of sonde's
encoder is reused.

  decode.py decode FILE            print the profile as JSON
  decode.py serve --out FILE [--fail-first N] [--status S]
                                   an HTTP server on 127.0.0.1 taking POST /ingest;
                                   prints {"port": N}, then appends one JSON line per
                                   accepted request to FILE; the first N requests are
                                   answered with status S (503) instead
"""

import argparse
import email.parser
import email.policy
import gzip
import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROTO_DIRS = [
    os.environ.get("PPROF_PROTO_DIR", ""),
    "/usr/share/gocode/src/github.com/google/pprof/proto",
]


def profile_pb2():
    """profile.proto compiled by protoc into a temporary package."""
    proto_dir = next((d for d in PROTO_DIRS if d and os.path.exists(os.path.join(d, "profile.proto"))), None)
    if proto_dir is None:
        sys.exit("profile.proto not found: apt-get install golang-github-google-pprof-dev")
    out = tempfile.mkdtemp(prefix="sonde-pprof-")
    subprocess.run(["protoc", f"--proto_path={proto_dir}", f"--python_out={out}", "profile.proto"], check=True)
    sys.path.insert(0, out)
    return importlib.import_module("profile_pb2")


PB = profile_pb2()


def decode(data):
    """The profile in `data` (gzipped or not) as plain JSON values."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    p = PB.Profile()
    p.ParseFromString(data)
    s = p.string_table
    assert s[0] == "", "string_table[0] must be empty"
    functions = {f.id: f for f in p.function}
    locations = {l.id: l for l in p.location}
    mappings = {m.id: m for m in p.mapping}
    samples = []
    for sample in p.sample:
        stack, modules, lines = [], [], []
        for lid in sample.location_id:
            loc = locations[lid]  # KeyError: a dangling location id
            for line in loc.line:
                stack.append(s[functions[line.function_id].name])
                lines.append(line.line)
            modules.append(s[mappings[loc.mapping_id].filename] if loc.mapping_id else "")
        labels = {s[l.key]: (s[l.str] if l.str else l.num) for l in sample.label}
        samples.append({"values": list(sample.value), "stack": stack, "modules": modules, "lines": lines, "labels": labels})
    return {
        "sample_type": [[s[t.type], s[t.unit]] for t in p.sample_type],
        "period_type": [s[p.period_type.type], s[p.period_type.unit]],
        "period": p.period,
        "time_nanos": p.time_nanos,
        "duration_nanos": p.duration_nanos,
        "functions": len(p.function),
        "locations": len(p.location),
        "mappings": len(p.mapping),
        "samples": samples,
    }


def multipart_profile(content_type, body):
    """The `profile` part of a multipart/form-data body, parsed by the email package."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "profile":
            return part.get_payload(decode=True)
    raise ValueError("no `profile` part")


def serve(args):
    lock = threading.Lock()
    state = {"seen": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            url = urllib.parse.urlsplit(self.path)
            with lock:
                state["seen"] += 1
                failing = state["seen"] <= args.fail_first
            if url.path != "/ingest":
                self.send_response(404)
                self.end_headers()
                return
            if failing:
                with lock, open(args.out, "a") as out:
                    out.write(json.dumps({"rejected": args.status}) + "\n")
                self.send_response(args.status)
                self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(b"not now")
                return
            try:
                profile = decode(multipart_profile(self.headers.get("Content-Type", ""), body))
            except Exception as error:  # a malformed request is a test failure, reported as 400
                self.send_response(400)
                self.end_headers()
                self.wfile.write(str(error).encode())
                return
            record = {
                "query": {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()},
                "tenant": self.headers.get("X-Scope-OrgID"),
                "authorization": self.headers.get("Authorization"),
                "profile": profile,
            }
            with lock, open(args.out, "a") as out:
                out.write(json.dumps(record) + "\n")
            self.send_response(200)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("decode")
    d.add_argument("file")
    s = sub.add_parser("serve")
    s.add_argument("--out", required=True)
    s.add_argument("--fail-first", type=int, default=0)
    s.add_argument("--status", type=int, default=503)
    args = parser.parse_args()
    if args.command == "decode":
        with open(args.file, "rb") as f:
            print(json.dumps(decode(f.read())))
    else:
        serve(args)


if __name__ == "__main__":
    main()
