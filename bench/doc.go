// Package bench generates load against a REAPI (Remote Execution API v2)
// server and measures it. It speaks only the standard API (Capabilities,
// ContentAddressableStorage, ByteStream, ActionCache), so it measures kiln
// and any other REAPI cache alike.
//
// A run generates all of its data before the clock starts: content is
// pseudo-random (incompressible) and mixes in a random run id, so every run
// uploads blobs the server has never seen and measures real writes rather
// than cache hits. Each phase reports its requests, blobs, bytes, wall time,
// throughput and per-request latency percentiles (a batch request counts as
// one request).
package bench
