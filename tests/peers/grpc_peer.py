"""A gRPC server or client for tests/bpf_protocols_h2.rs (grpcio, no
generated code: raw-bytes generic handlers).

server PORT: serves demo.Greeter/SayHello (unary), ListFeatures (server
streaming, 4 messages) and GetFeature (always NOT_FOUND).

client PORT: one call on a channel opened now, then waits for a line on
stdin (the agent starting), then 5 SayHello on that old channel; on a new
channel 3 SayHello, 2 ListFeatures, 1 GetFeature. Prints its counts.
"""
import sys
from concurrent import futures

import grpc

SERVICE = "demo.Greeter"


def serve(port):
    def say_hello(request, context):
        return b"hello " + request

    def list_features(request, context):
        for i in range(4):
            yield b"feature %d" % i

    def get_feature(request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, "no such feature")

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "SayHello": grpc.unary_unary_rpc_method_handler(say_hello),
            "ListFeatures": grpc.unary_stream_rpc_method_handler(list_features),
            "GetFeature": grpc.unary_unary_rpc_method_handler(get_feature),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def client(port):
    target = "127.0.0.1:%d" % port
    old = grpc.insecure_channel(target)
    hello = lambda ch: ch.unary_unary("/%s/SayHello" % SERVICE)(b"x", timeout=10)
    hello(old)
    print("connected", flush=True)
    sys.stdin.readline()
    for _ in range(5):
        hello(old)
    # A connection of its own (channels share subchannels by default).
    new = grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
    for _ in range(3):
        hello(new)
    streamed = 0
    for _ in range(2):
        streamed += len(list(new.unary_stream("/%s/ListFeatures" % SERVICE)(b"x", timeout=10)))
    try:
        new.unary_unary("/%s/GetFeature" % SERVICE)(b"x", timeout=10)
        failed = "OK"
    except grpc.RpcError as e:
        failed = e.code().name
    print("done streamed=%d failed=%s" % (streamed, failed), flush=True)


if __name__ == "__main__":
    {"server": serve, "client": client}[sys.argv[1]](int(sys.argv[2]))
