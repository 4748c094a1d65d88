// Command thinship-example-go is a Go client of thinship's receiver API
// (proto/thinship/v1/receiver.proto) and sender daemon API
// (proto/thinship/sender/v1/sender.proto), built from stubs that protoc generates
// with no extra flags (the proto's go_package). See README.md.
//
// Receiver calls (a "volume" is any file; a 64 KiB chunk of zeros is sent as
// an Unmap in a full, as a ZERO Data in an incremental):
//
//	full         a whole volume image
//	incremental  the chunks where -image differs from -base
//	resume       a full whose first call breaks once the receiver has a
//	             durable checkpoint; then GetTransferState and a second call
//	             with only the rest, the digest continued from digest_state
//	target       GetTarget: what a target holds (the snapshot recorded at
//	             its last commit, digest, time), whether it diverged since,
//	             and staged applies; a missing target (NOT_FOUND) exits 3,
//	             one the identity may not write (PERMISSION_DENIED) exits 13
//
// Sender daemon calls:
//
//	sender-watch StartTransfer from an offline pool, then WatchTransfer
//
// It computes checksums and the stream digest itself (End.digest in
// receiver.proto). Prints one JSON object; a failed call prints its gRPC
// code, message and the google.rpc.ErrorInfo (reason: thinship's stable
// code) from the rich error model, and exits 1 (target: 3 or 13 for its two
// refusals, as `thinship target show`).
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	senderv1 "github.com/thinship/thinship/gen/go/thinship/sender/v1"
	thinshipv1 "github.com/thinship/thinship/gen/go/thinship/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

const chunkBytes = 64 * 1024

const (
	kindData  = 0
	kindUnmap = 1
)

// digestChain is End.digest: d_0 = 32 zeros; d_i = sha256(d_{i-1} || kind u8 ||
// offset u64 BE || length u64 BE || Data's checksum or 32 zeros).
type digestChain [32]byte

func (d *digestChain) add(kind byte, offset, length uint64, checksum []byte) {
	var head [17]byte
	head[0] = kind
	binary.BigEndian.PutUint64(head[1:9], offset)
	binary.BigEndian.PutUint64(head[9:17], length)
	h := sha256.New()
	h.Write(d[:])
	h.Write(head[:])
	h.Write(checksum)
	copy(d[:], h.Sum(nil))
}

// record is one Data or Unmap of a stream.
type record struct {
	kind     byte
	offset   uint64
	length   uint64
	payload  []byte
	zero     bool
	checksum []byte // sha256 of the bytes (Data), 32 zeros (Unmap)
}

func dataRecord(offset uint64, payload []byte, zero bool, length uint64) record {
	var sum [32]byte
	if zero {
		sum = sha256.Sum256(make([]byte, length))
	} else {
		sum = sha256.Sum256(payload)
	}
	return record{kind: kindData, offset: offset, length: length, payload: payload, zero: zero, checksum: sum[:]}
}

func unmapRecord(offset, length uint64) record {
	return record{kind: kindUnmap, offset: offset, length: length, checksum: make([]byte, 32)}
}

func (r record) message() *thinshipv1.ApplyStreamRequest {
	if r.kind == kindUnmap {
		return &thinshipv1.ApplyStreamRequest{Kind: &thinshipv1.ApplyStreamRequest_Unmap{Unmap: &thinshipv1.Unmap{OffsetBytes: r.offset, LengthBytes: r.length}}}
	}
	d := &thinshipv1.Data{OffsetBytes: r.offset, LengthBytes: r.length, Encoding: thinshipv1.Encoding_ENCODING_RAW, Payload: r.payload, Checksum: r.checksum}
	if r.zero {
		d.Encoding, d.Payload = thinshipv1.Encoding_ENCODING_ZERO, nil
	}
	return &thinshipv1.ApplyStreamRequest{Kind: &thinshipv1.ApplyStreamRequest_Data{Data: d}}
}

func isZero(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }

func chunkAt(image []byte, off int) []byte {
	end := off + chunkBytes
	if end > len(image) {
		end = len(image)
	}
	return image[off:end]
}

// fullRecords: every non-zero chunk as RAW Data, runs of zero chunks as one Unmap each.
func fullRecords(image []byte) []record {
	var out []record
	zeroFrom := -1
	for off := 0; off < len(image); off += chunkBytes {
		c := chunkAt(image, off)
		if isZero(c) {
			if zeroFrom < 0 {
				zeroFrom = off
			}
			continue
		}
		if zeroFrom >= 0 {
			out = append(out, unmapRecord(uint64(zeroFrom), uint64(off-zeroFrom)))
			zeroFrom = -1
		}
		out = append(out, dataRecord(uint64(off), c, false, uint64(len(c))))
	}
	if zeroFrom >= 0 {
		out = append(out, unmapRecord(uint64(zeroFrom), uint64(len(image)-zeroFrom)))
	}
	return out
}

// incrementalRecords: the chunks that differ from base; ZERO Data where a chunk became all zeros.
func incrementalRecords(base, image []byte) ([]record, error) {
	if len(base) != len(image) {
		return nil, fmt.Errorf("base is %d bytes, image %d: an incremental needs equal sizes", len(base), len(image))
	}
	var out []record
	for off := 0; off < len(image); off += chunkBytes {
		c := chunkAt(image, off)
		if bytes.Equal(c, chunkAt(base, off)) {
			continue
		}
		if isZero(c) {
			out = append(out, dataRecord(uint64(off), nil, true, uint64(len(c))))
		} else {
			out = append(out, dataRecord(uint64(off), c, false, uint64(len(c))))
		}
	}
	return out, nil
}

// transfer is one stream of records to a target: its Begin and End.
type transfer struct {
	begin   thinshipv1.Begin
	records []record
}

func newTransfer(id, target string, volumeBytes int, records []record, sourceID, baseID string) *transfer {
	t := &transfer{records: records, begin: thinshipv1.Begin{
		ProtocolVersion: 1, TransferId: id, Target: target, Mode: thinshipv1.TransferMode_TRANSFER_MODE_FULL,
		VolumeSizeBytes: uint64(volumeBytes), BlockSizeBytes: chunkBytes, SourceId: sourceID, BaseId: baseID,
		Compression: thinshipv1.Compression_COMPRESSION_NONE, Checksum: thinshipv1.ChecksumAlgorithm_CHECKSUM_ALGORITHM_SHA256,
	}}
	if baseID != "" {
		t.begin.Mode = thinshipv1.TransferMode_TRANSFER_MODE_INCREMENTAL
	}
	for _, r := range records {
		if r.kind == kindData {
			t.begin.PlannedDataBytes += r.length
		} else {
			t.begin.PlannedUnmapBytes += r.length
		}
	}
	return t
}

// send runs one ApplyStream call: from the durable offset of resume (nil: a
// new transfer) on, digest and End counts continued from it. With
// stopBefore > 0 it sends only the records below that offset and no End,
// calls brk (which must end the call) and returns its error.
func (t *transfer) send(ctx context.Context, rx thinshipv1.ReceiverServiceClient, resume *thinshipv1.TransferState, stopBefore uint64, brk func()) (*thinshipv1.ApplyStreamResponse, digestChain, error) {
	var digest digestChain
	var nData, nUnmap, dataBytes, unmapBytes, start uint64
	if resume != nil {
		start = resume.DurableOffsetBytes
		if len(resume.DigestState) != 32 {
			return nil, digest, fmt.Errorf("digest_state is %d bytes, not 32", len(resume.DigestState))
		}
		copy(digest[:], resume.DigestState)
		nData, nUnmap, dataBytes, unmapBytes = resume.DataRecords, resume.UnmapRecords, resume.DataBytes, resume.UnmapBytes
	}
	stream, err := rx.ApplyStream(ctx)
	if err != nil {
		return nil, digest, err
	}
	begin := t.begin
	begin.ResumeOffsetBytes = start
	if err := stream.Send(&thinshipv1.ApplyStreamRequest{Kind: &thinshipv1.ApplyStreamRequest_Begin{Begin: &begin}}); err != nil {
		return nil, digest, closeErr(stream, err)
	}
	for _, r := range t.records {
		if r.offset < start {
			if r.offset+r.length > start {
				return nil, digest, fmt.Errorf("durable offset %d falls inside the record at %d", start, r.offset)
			}
			continue
		}
		if stopBefore > 0 && r.offset >= stopBefore {
			brk()
			_, err := stream.CloseAndRecv()
			return nil, digest, err
		}
		digest.add(r.kind, r.offset, r.length, r.checksum)
		if r.kind == kindData {
			nData, dataBytes = nData+1, dataBytes+r.length
		} else {
			nUnmap, unmapBytes = nUnmap+1, unmapBytes+r.length
		}
		if err := stream.Send(r.message()); err != nil {
			return nil, digest, closeErr(stream, err)
		}
	}
	end := &thinshipv1.End{Records: nData + nUnmap + 2, DataRecords: nData, UnmapRecords: nUnmap, DataBytes: dataBytes, UnmapBytes: unmapBytes, Digest: digest[:]}
	if err := stream.Send(&thinshipv1.ApplyStreamRequest{Kind: &thinshipv1.ApplyStreamRequest_End{End: end}}); err != nil {
		return nil, digest, closeErr(stream, err)
	}
	resp, err := stream.CloseAndRecv()
	return resp, digest, err
}

// closeErr: a Send that fails with io.EOF means the server ended the call; its status comes from CloseAndRecv.
func closeErr(stream thinshipv1.ReceiverService_ApplyStreamClient, err error) error {
	if errors.Is(err, io.EOF) {
		_, err = stream.CloseAndRecv()
	}
	return err
}

// errorJSON: the gRPC code and message, and the google.rpc.ErrorInfo the receiver put in grpc-status-details-bin.
func errorJSON(err error) map[string]interface{} {
	st, ok := status.FromError(err)
	if !ok {
		return map[string]interface{}{"error": "LOCAL", "details": err.Error(), "error_info": nil}
	}
	out := map[string]interface{}{"error": codeName(st.Code()), "details": st.Message(), "error_info": nil}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			md := info.GetMetadata()
			if md == nil {
				md = map[string]string{}
			}
			out["error_info"] = map[string]interface{}{"reason": info.GetReason(), "domain": info.GetDomain(), "metadata": md, "status_code": st.Proto().GetCode()}
			break
		}
	}
	return out
}

// reasonOf: the ErrorInfo reason of a failed call ("" if it has none).
func reasonOf(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// codeName: the canonical upper-case name (PERMISSION_DENIED), as the other clients print it.
func codeName(c codes.Code) string {
	names := map[codes.Code]string{codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
		codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS", codes.PermissionDenied: "PERMISSION_DENIED",
		codes.ResourceExhausted: "RESOURCE_EXHAUSTED", codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
		codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED"}
	if n, ok := names[c]; ok {
		return n
	}
	return c.String()
}

type connFlags struct{ address, serverName, ca, cert, key string }

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.address, "address", "", "HOST:PORT of the receiver (sender-watch: of the sender daemon)")
	fs.StringVar(&c.serverName, "server-name", "localhost", "name to verify the server certificate against")
	fs.StringVar(&c.ca, "ca", "", "CA bundle (PEM) that signed the server certificate")
	fs.StringVar(&c.cert, "cert", "", "client certificate (PEM)")
	fs.StringVar(&c.key, "key", "", "client key (PEM)")
}

func (c *connFlags) dial() (*grpc.ClientConn, error) {
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(c.ca)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: no PEM certificate", c.ca)
	}
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, ServerName: c.serverName, MinVersion: tls.VersionTLS12})
	return grpc.Dial(c.address, grpc.WithTransportCredentials(creds))
}

func result(ctx context.Context, rx thinshipv1.ReceiverServiceClient, resp *thinshipv1.ApplyStreamResponse, expected digestChain) (map[string]interface{}, error) {
	st, err := rx.GetTransferState(ctx, &thinshipv1.GetTransferStateRequest{TransferId: resp.TransferId})
	if err != nil {
		return nil, err
	}
	return map[string]interface{}{
		"transfer_id": resp.TransferId, "data_records_applied": resp.DataRecordsApplied, "unmap_records_applied": resp.UnmapRecordsApplied,
		"digest": hex.EncodeToString(resp.Digest), "expected_digest": hex.EncodeToString(expected[:]),
		"status": st.State.Status.String(), "durable_offset_bytes": st.State.DurableOffsetBytes,
	}, nil
}

// resume: a full whose first call breaks after a durable checkpoint, then the rest from GetTransferState.
func resume(ctx context.Context, rx thinshipv1.ReceiverServiceClient, t *transfer, volumeBytes int) (map[string]interface{}, error) {
	firstCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	waitDurable := func() {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) { // bounded wait on the receiver's state
			st, err := rx.GetTransferState(ctx, &thinshipv1.GetTransferStateRequest{TransferId: t.begin.TransferId})
			if err == nil && st.State.DurableOffsetBytes > 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel() // the broken stream
	}
	_, _, err := t.send(firstCtx, rx, nil, uint64(volumeBytes/2), waitDurable)
	if status.Code(err) != codes.Canceled {
		return nil, fmt.Errorf("the first call should have been cancelled, ended with: %v", err)
	}
	// The receiver may still be applying what it had buffered: wait (bounded)
	// until it has noticed the break, then resume from its durable state. A
	// RESUME_MISMATCH means the state moved on meanwhile: ask again, as
	// receiver.proto says.
	var st *thinshipv1.GetTransferStateResponse
	var resp *thinshipv1.ApplyStreamResponse
	var digest digestChain
	deadline := time.Now().Add(60 * time.Second)
	for attempt := 0; ; attempt++ {
		for {
			if st, err = rx.GetTransferState(ctx, &thinshipv1.GetTransferStateRequest{TransferId: t.begin.TransferId}); err != nil {
				return nil, err
			}
			if !st.State.Active || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if st.State.DurableOffsetBytes == 0 {
			return nil, errors.New("no durable checkpoint appeared within 60 s of the first call")
		}
		resp, digest, err = t.send(ctx, rx, st.State, 0, nil)
		if err == nil {
			break
		}
		if attempt == 2 || reasonOf(err) != "RESUME_MISMATCH" {
			return nil, err
		}
	}
	out, err := result(ctx, rx, resp, digest)
	if err != nil {
		return nil, err
	}
	out["resumed_from_offset_bytes"] = st.State.DurableOffsetBytes
	out["resumed_digest_state"] = hex.EncodeToString(st.State.DigestState)
	out["resumed_status"] = st.State.Status.String()
	return out, nil
}

func receiverCommand(cmd string, args []string) (map[string]interface{}, error) {
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	var conn connFlags
	conn.register(fs)
	image := fs.String("image", "", "the volume to send, as a file")
	base := fs.String("base", "", "incremental: the image the target already holds")
	baseID := fs.String("base-id", "", "incremental: its identity (the source id it was sent with)")
	target := fs.String("target", "", "the target, as the receiver's config names it")
	id := fs.String("transfer-id", "", "the transfer id")
	sourceID := fs.String("source-id", "", "identity of the image (Begin.source_id)")
	fs.Parse(args)
	img, err := os.ReadFile(*image)
	if err != nil {
		return nil, err
	}
	records := fullRecords(img)
	if cmd == "incremental" {
		b, err := os.ReadFile(*base)
		if err != nil {
			return nil, err
		}
		if records, err = incrementalRecords(b, img); err != nil {
			return nil, err
		}
	} else {
		*baseID = ""
	}
	cc, err := conn.dial()
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	rx := thinshipv1.NewReceiverServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t := newTransfer(*id, *target, len(img), records, *sourceID, *baseID)
	if cmd == "resume" {
		return resume(ctx, rx, t, len(img))
	}
	resp, digest, err := t.send(ctx, rx, nil, 0, nil)
	if err != nil {
		return nil, err
	}
	return result(ctx, rx, resp, digest)
}

// getTarget: GetTarget, every field of the answer under its .proto name,
// digest in hex, receive_time in RFC 3339. "record" is null when the target
// has no record (never received anything, or last received a plain LINBIT
// stream, which names no snapshot).
func getTarget(args []string) (map[string]interface{}, error) {
	fs := flag.NewFlagSet("target", flag.ExitOnError)
	var conn connFlags
	conn.register(fs)
	target := fs.String("target", "", "the target, as in Begin.target (an absolute path, or vg/lv)")
	fs.Parse(args)
	cc, err := conn.dial()
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := thinshipv1.NewReceiverServiceClient(cc).GetTarget(ctx, &thinshipv1.GetTargetRequest{Target: *target})
	if err != nil {
		return nil, err
	}
	var record interface{} // a message field: nil means "no record", not an empty one
	if r := resp.Record; r != nil {
		record = map[string]interface{}{
			"source_id": r.SourceId, "base_id": r.BaseId, "snapshot_name": r.SnapshotName, "volume_size_bytes": r.VolumeSizeBytes,
			"digest": hex.EncodeToString(r.Digest), "transfer_id": r.TransferId,
			"receive_time": rfc3339(r.ReceiveTime.AsTime()),
		}
	}
	staged := []map[string]string{}
	for _, s := range resp.Staged {
		staged = append(staged, map[string]string{"kind": s.Kind})
	}
	divergence := resp.Divergence
	if divergence == nil {
		divergence = []string{} // [] rather than null, as the other clients print it
	}
	kept := resp.KeptSnapshots
	if kept == nil {
		kept = []string{}
	}
	return map[string]interface{}{
		"target": resp.Target, "kind": resp.Kind, "record": record, "record_store": resp.RecordStore,
		"diverged": resp.Diverged, "divergence": divergence, "divergence_unchecked": resp.DivergenceUnchecked,
		"staged": staged, "identity": resp.Identity,
		"last_snapshot": resp.LastSnapshot, "kept_snapshots": kept,
	}, nil
}

// rfc3339: a time as proto3's JSON mapping writes a Timestamp (UTC, "Z", 0,
// 3, 6 or 9 fractional digits), as Python's Timestamp.ToJsonString does.
func rfc3339(t time.Time) string {
	t = t.UTC()
	switch n := t.Nanosecond(); {
	case n == 0:
		return t.Format("2006-01-02T15:04:05Z")
	case n%1e6 == 0:
		return t.Format("2006-01-02T15:04:05.000Z")
	case n%1e3 == 0:
		return t.Format("2006-01-02T15:04:05.000000Z")
	default:
		return t.Format("2006-01-02T15:04:05.000000000Z")
	}
}

// targetRefusals: GetTarget's two refusals a script acts on, by gRPC code
// (the ErrorInfo reason is the same word), and the exit status `thinship
// target show` gives them. PERMISSION_DENIED says nothing of the target, not
// even whether it exists: the receiver checks the identity's rules first.
var targetRefusals = map[codes.Code]int{codes.NotFound: 3, codes.PermissionDenied: 13}

func senderWatch(args []string) (map[string]interface{}, error) {
	fs := flag.NewFlagSet("sender-watch", flag.ExitOnError)
	var conn connFlags
	conn.register(fs)
	requestID := fs.String("request-id", "", "the caller's request id (a repeat returns the same transfer)")
	metadata := fs.String("metadata", "", "offline pool metadata file")
	data := fs.String("data", "", "offline pool data file")
	volumeBytes := fs.Uint64("volume-size-bytes", 0, "volume size (0: the end of the last mapping)")
	snapshot := fs.String("snapshot", "", "thin device id of the snapshot")
	base := fs.String("base", "", "thin device id of the base (an incremental)")
	receiver := fs.String("receiver", "", "HOST:PORT of the receiver the daemon sends to")
	receiverName := fs.String("receiver-server-name", "", "name the daemon verifies the receiver's certificate against")
	target := fs.String("target", "", "the target on the receiver")
	fs.Parse(args)
	cc, err := conn.dial()
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	tx := senderv1.NewSenderServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	started, err := tx.StartTransfer(ctx, &senderv1.StartTransferRequest{
		RequestId:   *requestID,
		Source:      &senderv1.Source{Snapshot: *snapshot, Base: *base, OfflinePool: &senderv1.OfflinePool{MetadataPath: *metadata, DataPath: *data, VolumeSizeBytes: *volumeBytes}},
		Destination: &senderv1.Destination{ReceiverAddress: *receiver, ServerName: *receiverName, Target: *target},
	})
	if err != nil {
		return nil, err
	}
	watch, err := tx.WatchTransfer(ctx, &senderv1.WatchTransferRequest{TransferId: started.Transfer.TransferId})
	if err != nil {
		return nil, err
	}
	var states []string
	var last *senderv1.TransferInfo
	for {
		m, err := watch.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		states = append(states, m.Transfer.State.String())
		last = m.Transfer
	}
	if last == nil {
		return nil, errors.New("WatchTransfer ended without a state")
	}
	return map[string]interface{}{
		"transfer_id": started.Transfer.TransferId, "started_state": started.Transfer.State.String(), "states": states, "state": last.State.String(),
		"done_bytes": last.DoneBytes, "total_bytes": last.TotalBytes, "digest": last.Digest, "error_code": last.ErrorCode, "error_message": last.ErrorMessage,
	}, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: thinship-example-go full|incremental|resume|target|sender-watch -flags (-h for each)")
		os.Exit(2)
	}
	var out map[string]interface{}
	var err error
	cmd := os.Args[1]
	switch cmd {
	case "full", "incremental", "resume":
		out, err = receiverCommand(cmd, os.Args[2:])
	case "target":
		out, err = getTarget(os.Args[2:])
	case "sender-watch":
		out, err = senderWatch(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", cmd)
		os.Exit(2)
	}
	code := 0
	if err != nil {
		out, code = errorJSON(err), 1
		if c, ok := targetRefusals[status.Code(err)]; ok && cmd == "target" {
			code = c
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(3)
	}
	os.Exit(code)
}
