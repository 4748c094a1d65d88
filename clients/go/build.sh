#!/bin/sh
# Generates the Go stubs from ../../proto (protoc with protoc-gen-go and
# protoc-gen-go-grpc, no extra flags: the files land under the proto's
# go_package path) into OUT/gopath/src and builds OUT/thinship-example-go
# against the Go sources Debian's packages install in /usr/share/gocode
# (GOPATH mode: no module download, no network).
#
# usage: build.sh OUT
set -eu
here=$(cd "$(dirname "$0")" && pwd)
proto="$here/../../proto"
out=$(mkdir -p "$1" && cd "$1" && pwd)
src="$out/gopath/src"
mkdir -p "$src"
protoc -I "$proto" --go_out="$src" --go-grpc_out="$src" \
  "$proto/thinship/v1/receiver.proto" "$proto/thinship/sender/v1/sender.proto"
cd "$here"
GO111MODULE=off GOPATH="$out/gopath:/usr/share/gocode" GOFLAGS= go build -o "$out/thinship-example-go" .
