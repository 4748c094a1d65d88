#!/usr/bin/python3
"""A thinship sender in another language: a short Python client of the
receiver API (proto/thinship/v1/receiver.proto), with Debian's python3-grpcio.

Generates its stubs at run time from the .proto (and the google.rpc error
model's, vendored in proto/google/rpc) into a temporary directory
(python3-grpc-tools), then sends a small full stream over mTLS: RAW data, a
ZERO chunk, an UNMAP, and the END with the counts and the stream digest, all
computed here from the proto's comments. Prints the response as JSON; an error
as its gRPC code and the google.rpc.ErrorInfo from the
grpc-status-details-bin trailer (what grpc_status.rpc_status.from_call does,
without needing python3-grpcio-status).

usage: send_small.py PROTO_ROOT HOST:PORT SERVER_NAME CA CERT KEY TARGET TRANSFER_ID [--bad-checksum]

--bad-checksum sends the second Data with a wrong checksum (the receiver refuses
it with DATA_LOSS, reason CHECKSUM_MISMATCH, naming its volume offset).
"""
import atexit
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile

import grpc_tools
from grpc_tools import protoc

VOLUME = 1024 * 1024
CHUNK = 64 * 1024


def stubs(proto_root):
    out = tempfile.mkdtemp(prefix="thinship-py-")
    atexit.register(shutil.rmtree, out, True)
    # google/protobuf/*.proto (Timestamp, Any, Duration) come with grpc_tools
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main([
        "grpc_tools.protoc", f"-I{proto_root}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}",
        os.path.join(proto_root, "thinship", "v1", "receiver.proto"),
        os.path.join(proto_root, "google", "rpc", "status.proto"),
        os.path.join(proto_root, "google", "rpc", "error_details.proto"),
    ])
    if rc != 0:
        raise SystemExit(f"protoc failed with {rc}")
    sys.path.insert(0, out)
    from thinship.v1 import receiver_pb2, receiver_pb2_grpc  # noqa: E402
    from google.rpc import status_pb2, error_details_pb2  # noqa: E402
    return receiver_pb2, receiver_pb2_grpc, status_pb2, error_details_pb2


def error_info(err, status_pb2, error_details_pb2):
    """The receiver's google.rpc.ErrorInfo: reason (thinship's stable code), domain, metadata."""
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return {"reason": info.reason, "domain": info.domain, "metadata": dict(info.metadata),
                        "status_code": status.code}
    return None


class Digest:
    """d_i = sha256(d_{i-1} || kind u8 || offset u64 BE || length u64 BE || checksum or 32 zeros)."""

    def __init__(self):
        self.d = bytes(32)

    def add(self, kind, offset, length, checksum):
        self.d = hashlib.sha256(self.d + struct.pack(">BQQ", kind, offset, length) + checksum).digest()


def pattern(seed, n):
    # deterministic bytes the node test recomputes: byte i = (seed * 31 + i * 7) % 251
    return bytes((seed * 31 + i * 7) % 251 for i in range(n))


def main():
    proto_root, address, server_name, ca, cert, key, target, transfer_id = sys.argv[1:9]
    bad_checksum = sys.argv[9:] == ["--bad-checksum"]
    pb, pb_grpc, status_pb2, error_details_pb2 = stubs(proto_root)
    import grpc

    creds = grpc.ssl_channel_credentials(open(ca, "rb").read(), open(key, "rb").read(), open(cert, "rb").read())
    channel = grpc.secure_channel(address, creds, options=[("grpc.ssl_target_name_override", server_name)])
    stub = pb_grpc.ReceiverServiceStub(channel)

    digest = Digest()
    records = []
    counts = {"data": 0, "unmap": 0, "data_bytes": 0, "unmap_bytes": 0}

    def data(offset, payload, zero=False):
        checksum = hashlib.sha256(bytes(len(payload)) if zero else payload).digest()
        if bad_checksum and counts["data"] == 1:
            checksum = bytes(32)
        digest.add(0, offset, len(payload), checksum)
        counts["data"] += 1
        counts["data_bytes"] += len(payload)
        enc = pb.ENCODING_ZERO if zero else pb.ENCODING_RAW
        records.append(pb.ApplyStreamRequest(data=pb.Data(offset_bytes=offset, length_bytes=len(payload),
                                                    payload=b"" if zero else payload, encoding=enc, checksum=checksum)))

    def unmap(offset, length):
        digest.add(1, offset, length, bytes(32))
        counts["unmap"] += 1
        counts["unmap_bytes"] += length
        records.append(pb.ApplyStreamRequest(unmap=pb.Unmap(offset_bytes=offset, length_bytes=length)))

    data(0, pattern(1, CHUNK))
    data(CHUNK, pattern(2, CHUNK))
    data(4 * CHUNK, bytes(CHUNK), zero=True)
    unmap(8 * CHUNK, 2 * CHUNK)
    data(12 * CHUNK, pattern(3, CHUNK))

    begin = pb.Begin(protocol_version=1, transfer_id=transfer_id, target=target, mode=pb.TRANSFER_MODE_FULL,
                     volume_size_bytes=VOLUME, block_size_bytes=CHUNK, source_id="python-source",
                     planned_data_bytes=counts["data_bytes"], planned_unmap_bytes=counts["unmap_bytes"],
                     resume_offset_bytes=0, compression=pb.COMPRESSION_NONE, checksum=pb.CHECKSUM_ALGORITHM_SHA256)
    end = pb.End(records=counts["data"] + counts["unmap"] + 2, data_records=counts["data"], unmap_records=counts["unmap"],
                 data_bytes=counts["data_bytes"], unmap_bytes=counts["unmap_bytes"], digest=digest.d)

    def requests():
        yield pb.ApplyStreamRequest(begin=begin)
        yield from records
        yield pb.ApplyStreamRequest(end=end)

    try:
        resp = stub.ApplyStream(requests(), timeout=30)
    except grpc.RpcError as e:
        print(json.dumps({"error": e.code().name, "details": e.details(),
                          "error_info": error_info(e, status_pb2, error_details_pb2)}))
        return 1
    state = stub.GetTransferState(pb.GetTransferStateRequest(transfer_id=transfer_id), timeout=30).state
    print(json.dumps({
        "transfer_id": resp.transfer_id,
        "data_records_applied": resp.data_records_applied,
        "digest": resp.digest.hex(),
        "expected_digest": digest.d.hex(),
        "status": pb.TransferStatus.Name(state.status),
        "durable_offset_bytes": state.durable_offset_bytes,
        "update_time": state.update_time.ToJsonString(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
