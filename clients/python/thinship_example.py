#!/usr/bin/python3
"""thinship from Python: a small example client of the receiver API
(proto/thinship/v1/receiver.proto) and the sender daemon's API
(proto/thinship/sender/v1/sender.proto), for Debian's python3-grpcio and
python3-grpc-tools (see README.md beside this file).

It generates its stubs at run time from the .proto files (and the vendored
google.rpc error model, proto/google/rpc) into a temporary directory, and
computes checksums and the stream digest itself from the proto's description
(End.digest), never by calling thinship.

Receiver calls (a "volume" is any file; a 64 KiB chunk that is all zeros is
sent as an Unmap in a full, as a ZERO Data in an incremental):
  small        a fixed small stream: RAW, a ZERO chunk, an UNMAP, the END
  full         a whole volume image
  incremental  the chunks where IMAGE differs from BASE, to a target that holds BASE
  resume       a full whose first call breaks once the receiver has a durable
               checkpoint; then GetTransferState and a second call that sends
               only the rest, continuing the digest from its digest_state
  target       GetTarget: what a target holds (the snapshot recorded at its
               last commit, digest, time), whether it diverged since, and
               staged applies; a missing target (NOT_FOUND) exits 3, one the
               identity may not write (PERMISSION_DENIED) exits 13
Sender daemon calls:
  sender-watch StartTransfer from an offline pool, then WatchTransfer to the end

Prints one JSON object. An error prints its gRPC code, message and the
google.rpc.ErrorInfo from the grpc-status-details-bin trailer (what
grpc_status.rpc_status.from_call does, without python3-grpcio-status), and
exits 1 (`target`: 3 or 13 for its two refusals, as `thinship target show`).
"""
import argparse
import atexit
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
import threading
import time

import grpc_tools
from grpc_tools import protoc

CHUNK = 64 * 1024
ZERO_DIGEST = bytes(32)
KIND_DATA, KIND_UNMAP = 0, 1


class Stubs:
    """Modules generated from proto/: receiver, sender, google.rpc status and error details."""

    def __init__(self, proto_root):
        out = tempfile.mkdtemp(prefix="thinship-py-")
        atexit.register(shutil.rmtree, out, True)
        # google/protobuf/*.proto (Timestamp, Any) come with grpc_tools
        well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        files = ["thinship/v1/receiver.proto", "thinship/sender/v1/sender.proto", "google/rpc/status.proto",
                 "google/rpc/error_details.proto"]
        rc = protoc.main(["grpc_tools.protoc", f"-I{proto_root}", f"-I{well_known}", f"--python_out={out}",
                          f"--grpc_python_out={out}"] + [os.path.join(proto_root, f) for f in files])
        if rc != 0:
            raise SystemExit(f"protoc failed with {rc}")
        sys.path.insert(0, out)
        from thinship.v1 import receiver_pb2, receiver_pb2_grpc  # noqa: E402
        from thinship.sender.v1 import sender_pb2, sender_pb2_grpc  # noqa: E402
        from google.rpc import status_pb2, error_details_pb2  # noqa: E402
        self.rx, self.rx_grpc, self.tx, self.tx_grpc = receiver_pb2, receiver_pb2_grpc, sender_pb2, sender_pb2_grpc
        self.status, self.details = status_pb2, error_details_pb2


def error_info(err, pb):
    """The google.rpc.ErrorInfo of a failed call: reason (thinship's stable code), domain, metadata."""
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = pb.status.Status.FromString(value)
        for detail in status.details:
            if detail.Is(pb.details.ErrorInfo.DESCRIPTOR):
                info = pb.details.ErrorInfo()
                detail.Unpack(info)
                return {"reason": info.reason, "domain": info.domain, "metadata": dict(info.metadata),
                        "status_code": status.code}
    return None


class Digest:
    """End.digest: d_0 = 32 zeros; d_i = sha256(d_{i-1} || kind u8 || offset u64 BE || length u64 BE ||
    Data's checksum or 32 zeros)."""

    def __init__(self, state=ZERO_DIGEST):
        self.d = bytes(state)

    def add(self, kind, offset, length, checksum):
        self.d = hashlib.sha256(self.d + struct.pack(">BQQ", kind, offset, length) + checksum).digest()


class Record:
    """One Data or Unmap of a stream, with the sha256 of its bytes (Data) and its payload encoding."""

    def __init__(self, kind, offset, length, payload=b"", zero=False):
        self.kind, self.offset, self.length, self.payload, self.zero = kind, offset, length, payload, zero
        self.checksum = hashlib.sha256(bytes(length) if zero else payload).digest() if kind == KIND_DATA else ZERO_DIGEST

    def message(self, pb):
        if self.kind == KIND_UNMAP:
            return pb.rx.ApplyStreamRequest(unmap=pb.rx.Unmap(offset_bytes=self.offset, length_bytes=self.length))
        enc = pb.rx.ENCODING_ZERO if self.zero else pb.rx.ENCODING_RAW
        return pb.rx.ApplyStreamRequest(data=pb.rx.Data(offset_bytes=self.offset, length_bytes=self.length,
                                                        payload=b"" if self.zero else self.payload, encoding=enc,
                                                        checksum=self.checksum))


def full_records(image):
    """Every non-zero chunk as RAW Data; runs of zero chunks as one Unmap each."""
    records, zero_from = [], None
    for off in range(0, len(image), CHUNK):
        chunk = image[off:off + CHUNK]
        if chunk.count(0) == len(chunk):
            zero_from = off if zero_from is None else zero_from
            continue
        if zero_from is not None:
            records.append(Record(KIND_UNMAP, zero_from, off - zero_from))
            zero_from = None
        records.append(Record(KIND_DATA, off, len(chunk), chunk))
    if zero_from is not None:
        records.append(Record(KIND_UNMAP, zero_from, len(image) - zero_from))
    return records


def incremental_records(base, image):
    """The chunks that differ from the base: RAW Data, or ZERO Data where the chunk became all zeros."""
    if len(base) != len(image):
        raise SystemExit(f"base is {len(base)} bytes, image {len(image)}: an incremental needs equal sizes")
    records = []
    for off in range(0, len(image), CHUNK):
        chunk = image[off:off + CHUNK]
        if chunk != base[off:off + CHUNK]:
            zero = chunk.count(0) == len(chunk)
            records.append(Record(KIND_DATA, off, len(chunk), b"" if zero else chunk, zero=zero))
    return records


class Totals:
    """End's whole-transfer counts (a resumed call starts from TransferState's)."""

    def __init__(self, state=None):
        self.data = state.data_records if state else 0
        self.unmap = state.unmap_records if state else 0
        self.data_bytes = state.data_bytes if state else 0
        self.unmap_bytes = state.unmap_bytes if state else 0

    def add(self, r):
        if r.kind == KIND_DATA:
            self.data += 1
            self.data_bytes += r.length
        else:
            self.unmap += 1
            self.unmap_bytes += r.length


class Transfer:
    """One transfer of a list of records to a target: the Begin, the End's counts and digest."""

    def __init__(self, pb, transfer_id, target, volume_bytes, records, source_id, base_id=""):
        self.pb, self.records = pb, records
        mode = pb.rx.TRANSFER_MODE_INCREMENTAL if base_id else pb.rx.TRANSFER_MODE_FULL
        self.begin_fields = dict(
            protocol_version=1, transfer_id=transfer_id, target=target, mode=mode, volume_size_bytes=volume_bytes,
            block_size_bytes=CHUNK, source_id=source_id, base_id=base_id,
            planned_data_bytes=sum(r.length for r in records if r.kind == KIND_DATA),
            planned_unmap_bytes=sum(r.length for r in records if r.kind == KIND_UNMAP),
            compression=pb.rx.COMPRESSION_NONE, checksum=pb.rx.CHECKSUM_ALGORITHM_SHA256)

    def messages(self, resume_state=None, stop_before=None, hold=None):
        """The call's messages: from resume_state's durable offset on (digest and counts continued from it);
        with stop_before, only the records below that offset and no End, then wait for `hold` (a broken call)."""
        pb = self.pb
        start = resume_state.durable_offset_bytes if resume_state else 0
        digest = Digest(resume_state.digest_state if resume_state else ZERO_DIGEST)
        totals = Totals(resume_state)
        yield pb.rx.ApplyStreamRequest(begin=pb.rx.Begin(resume_offset_bytes=start, **self.begin_fields))
        for r in self.records:
            if r.offset < start:
                if r.offset + r.length > start:
                    raise SystemExit(f"durable offset {start} falls inside the record at {r.offset}")
                continue
            if stop_before is not None and r.offset >= stop_before:
                hold.wait(60)
                return
            digest.add(r.kind, r.offset, r.length, r.checksum)
            totals.add(r)
            yield r.message(pb)
        self.expected_digest = digest.d
        yield pb.rx.ApplyStreamRequest(end=pb.rx.End(
            records=totals.data + totals.unmap + 2, data_records=totals.data, unmap_records=totals.unmap,
            data_bytes=totals.data_bytes, unmap_bytes=totals.unmap_bytes, digest=digest.d))


def credentials(args):
    read = lambda p: open(p, "rb").read()  # noqa: E731
    return grpc_module().ssl_channel_credentials(read(args.ca), read(args.key), read(args.cert))


def grpc_module():
    import grpc
    return grpc


def channel(args):
    return grpc_module().secure_channel(args.address, credentials(args),
                                        options=[("grpc.ssl_target_name_override", args.server_name)])


def receiver_result(pb, stub, resp, expected_digest, extra=None):
    state = stub.GetTransferState(pb.rx.GetTransferStateRequest(transfer_id=resp.transfer_id), timeout=30).state
    out = {
        "transfer_id": resp.transfer_id,
        "data_records_applied": resp.data_records_applied,
        "unmap_records_applied": resp.unmap_records_applied,
        "digest": resp.digest.hex(),
        "expected_digest": expected_digest.hex(),
        "status": pb.rx.TransferStatus.Name(state.status),
        "durable_offset_bytes": state.durable_offset_bytes,
        "update_time": state.update_time.ToJsonString(),
    }
    out.update(extra or {})
    return out


def cmd_small(pb, args):
    """The fixed small stream (1 MiB volume); --bad-checksum spoils the second Data's checksum."""
    def pattern(seed, n):  # byte i = (seed * 31 + i * 7) % 251, recomputed by the tests
        return bytes((seed * 31 + i * 7) % 251 for i in range(n))
    records = [Record(KIND_DATA, 0, CHUNK, pattern(1, CHUNK)), Record(KIND_DATA, CHUNK, CHUNK, pattern(2, CHUNK)),
               Record(KIND_DATA, 4 * CHUNK, CHUNK, zero=True), Record(KIND_UNMAP, 8 * CHUNK, 2 * CHUNK),
               Record(KIND_DATA, 12 * CHUNK, CHUNK, pattern(3, CHUNK))]
    if args.bad_checksum:
        records[1].checksum = ZERO_DIGEST
    t = Transfer(pb, args.transfer_id, args.target, 1024 * 1024, records, "python-source")
    stub = pb.rx_grpc.ReceiverServiceStub(channel(args))
    resp = stub.ApplyStream(t.messages(), timeout=60)
    return receiver_result(pb, stub, resp, t.expected_digest)


def read_image(path):
    with open(path, "rb") as f:
        return f.read()


def cmd_full(pb, args):
    image = read_image(args.image)
    t = Transfer(pb, args.transfer_id, args.target, len(image), full_records(image), args.source_id)
    stub = pb.rx_grpc.ReceiverServiceStub(channel(args))
    resp = stub.ApplyStream(t.messages(), timeout=300)
    return receiver_result(pb, stub, resp, t.expected_digest)


def cmd_incremental(pb, args):
    image, base = read_image(args.image), read_image(args.base)
    t = Transfer(pb, args.transfer_id, args.target, len(image), incremental_records(base, image), args.source_id,
                 base_id=args.base_id)
    stub = pb.rx_grpc.ReceiverServiceStub(channel(args))
    resp = stub.ApplyStream(t.messages(), timeout=300)
    return receiver_result(pb, stub, resp, t.expected_digest)


def cmd_resume(pb, args):
    """A full whose first call breaks: it sends the records below half the volume, waits until the receiver
    reports a durable checkpoint above 0, and is cancelled (no End). Then GetTransferState says where to go on."""
    grpc = grpc_module()
    image = read_image(args.image)
    t = Transfer(pb, args.transfer_id, args.target, len(image), full_records(image), args.source_id)
    stub = pb.rx_grpc.ReceiverServiceStub(channel(args))
    hold = threading.Event()
    first = stub.ApplyStream.future(t.messages(stop_before=len(image) // 2, hold=hold), timeout=300)
    deadline = time.monotonic() + 60
    while True:  # bounded wait on the receiver's state, not on a timer
        try:
            st = stub.GetTransferState(pb.rx.GetTransferStateRequest(transfer_id=args.transfer_id), timeout=30).state
            if st.durable_offset_bytes > 0:
                break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
        if first.done() or time.monotonic() > deadline:
            raise SystemExit("the first call ended or no durable checkpoint appeared within 60 s")
        time.sleep(0.05)
    first.cancel()  # the broken stream
    hold.set()
    try:
        first.result()
        raise SystemExit("the first call succeeded although it sent no End")
    except grpc.FutureCancelledError:
        pass
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.CANCELLED:
            raise
    # The receiver may still be applying what it had buffered: wait (bounded) until it has noticed the
    # break, then resume from its durable state. A RESUME_MISMATCH means the state moved on meanwhile:
    # ask again, as receiver.proto says.
    deadline = time.monotonic() + 60
    for attempt in range(3):
        while True:
            state = stub.GetTransferState(pb.rx.GetTransferStateRequest(transfer_id=args.transfer_id), timeout=30).state
            if not state.active or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        try:
            resp = stub.ApplyStream(t.messages(resume_state=state), timeout=300)
            break
        except grpc.RpcError as e:
            info = error_info(e, pb)
            if attempt == 2 or not info or info["reason"] != "RESUME_MISMATCH":
                raise
    return receiver_result(pb, stub, resp, t.expected_digest, {
        "resumed_from_offset_bytes": state.durable_offset_bytes,
        "resumed_digest_state": state.digest_state.hex(),
        "resumed_status": pb.rx.TransferStatus.Name(state.status),
    })


def cmd_target(pb, args):
    """GetTarget, every field of the answer under its .proto name: digest in hex, receive_time in RFC 3339
    (proto3's JSON mapping). record is None when the target has no record (never received anything, or last
    received a plain LINBIT stream, which names no snapshot)."""
    stub = pb.rx_grpc.ReceiverServiceStub(channel(args))
    resp = stub.GetTarget(pb.rx.GetTargetRequest(target=args.target), timeout=30)
    record = None
    if resp.HasField("record"):  # a message field: unset means "no record", not an empty one
        r = resp.record
        record = {"source_id": r.source_id, "base_id": r.base_id, "snapshot_name": r.snapshot_name,
                  "volume_size_bytes": r.volume_size_bytes, "digest": r.digest.hex(), "transfer_id": r.transfer_id,
                  "receive_time": r.receive_time.ToJsonString()}
    return {"target": resp.target, "kind": resp.kind, "record": record, "record_store": resp.record_store,
            "diverged": resp.diverged, "divergence": list(resp.divergence),
            "divergence_unchecked": resp.divergence_unchecked, "staged": [{"kind": s.kind} for s in resp.staged],
            "identity": resp.identity, "last_snapshot": resp.last_snapshot,
            "kept_snapshots": list(resp.kept_snapshots)}


# GetTarget's two refusals a script acts on, by gRPC code (the ErrorInfo reason is the same word), and the exit
# status `thinship target show` gives them. PERMISSION_DENIED says nothing of the target, not even whether it
# exists: the receiver checks the identity's rules before it looks.
TARGET_REFUSALS = {"NOT_FOUND": 3, "PERMISSION_DENIED": 13}


def cmd_sender_watch(pb, args):
    """StartTransfer from an offline pool (dev ids as snapshot and base), then every WatchTransfer state."""
    tx = pb.tx
    stub = pb.tx_grpc.SenderServiceStub(channel(args))
    req = tx.StartTransferRequest(
        request_id=args.request_id,
        source=tx.Source(snapshot=args.snapshot, base=args.base or "",
                         offline_pool=tx.OfflinePool(metadata_path=args.metadata, data_path=args.data,
                                                     volume_size_bytes=args.volume_size_bytes)),
        destination=tx.Destination(receiver_address=args.receiver, server_name=args.receiver_server_name,
                                   target=args.target))
    started = stub.StartTransfer(req, timeout=60).transfer
    states = []
    for m in stub.WatchTransfer(tx.WatchTransferRequest(transfer_id=started.transfer_id), timeout=600):
        states.append(tx.TransferInfo.State.Name(m.transfer.state))
        last = m.transfer
    return {"transfer_id": started.transfer_id, "started_state": tx.TransferInfo.State.Name(started.state),
            "states": states, "state": states[-1], "done_bytes": last.done_bytes, "total_bytes": last.total_bytes,
            "digest": last.digest, "error_code": last.error_code, "error_message": last.error_message}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--proto-root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto"),
                   help="the repository's proto/ directory")
    p.add_argument("--address", required=True, help="HOST:PORT of the receiver (or, for sender-watch, the sender daemon)")
    p.add_argument("--server-name", default="localhost", help="name to verify the server certificate against")
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("small")
    s.add_argument("--target", required=True)
    s.add_argument("--transfer-id", required=True)
    s.add_argument("--bad-checksum", action="store_true", help="spoil the second Data's checksum (DATA_LOSS)")
    for name in ("full", "incremental", "resume"):
        s = sub.add_parser(name)
        s.add_argument("--image", required=True, help="the volume to send, as a file")
        s.add_argument("--target", required=True)
        s.add_argument("--transfer-id", required=True)
        s.add_argument("--source-id", required=True, help="identity of the image (Begin.source_id)")
        if name == "incremental":
            s.add_argument("--base", required=True, help="the image the target already holds")
            s.add_argument("--base-id", required=True, help="its identity (the source_id it was sent with)")
    s = sub.add_parser("target", help="GetTarget: what a target holds")
    s.add_argument("--target", required=True, help="the target, as in Begin.target (an absolute path, or vg/lv)")
    s = sub.add_parser("sender-watch")
    s.add_argument("--request-id", required=True)
    s.add_argument("--metadata", required=True, help="offline pool metadata file")
    s.add_argument("--data", required=True, help="offline pool data file")
    s.add_argument("--volume-size-bytes", type=int, default=0)
    s.add_argument("--snapshot", required=True, help="thin device id of the snapshot")
    s.add_argument("--base", help="thin device id of the base (an incremental)")
    s.add_argument("--receiver", required=True, help="HOST:PORT of the receiver the daemon sends to")
    s.add_argument("--receiver-server-name", default="")
    s.add_argument("--target", required=True)
    return p.parse_args(argv)


COMMANDS = {"small": cmd_small, "full": cmd_full, "incremental": cmd_incremental, "resume": cmd_resume,
            "target": cmd_target, "sender-watch": cmd_sender_watch}


def main(argv):
    args = parse_args(argv)
    pb = Stubs(args.proto_root)
    grpc = grpc_module()
    try:
        out = COMMANDS[args.command](pb, args)
    except grpc.RpcError as e:
        print(json.dumps({"error": e.code().name, "details": e.details(), "error_info": error_info(e, pb)}))
        if args.command == "target":
            return TARGET_REFUSALS.get(e.code().name, 1)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
