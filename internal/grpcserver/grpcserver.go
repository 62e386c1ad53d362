// Package grpcserver builds kiln's gRPC servers: message limits, keepalive,
// Prometheus metrics per method and code, and recovery from panics in
// handlers (a bug answers Internal instead of killing the server).
package grpcserver

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/kiln-build/kiln/internal/grpcaddr"
)

// metrics are the per-method counters and latency histograms.
type metrics struct {
	handled  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_grpc_server_handled_total",
			Help: "RPCs completed, by method and gRPC code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kiln_grpc_server_handling_seconds",
			Help:    "Time from the start of an RPC to its end, by method.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"method"}),
	}
	reg.MustRegister(m.handled, m.duration)
	return m
}

func (m *metrics) observe(method string, start time.Time, err error) {
	m.handled.WithLabelValues(method, status.Code(err).String()).Inc()
	m.duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
}

// New returns a gRPC server with kiln's options and interceptors, metrics
// registered in reg.
func New(log *slog.Logger, reg prometheus.Registerer, extra ...grpc.ServerOption) *grpc.Server {
	m := newMetrics(reg)
	recoverErr := func(method string, p any) error {
		log.Error("panic in gRPC handler", "method", method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return status.Errorf(codes.Internal, "%s: internal error (panic), see the server log", method)
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				err = recoverErr(info.FullMethod, p)
			}
			m.observe(info.FullMethod, start, err)
		}()
		return h(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				err = recoverErr(info.FullMethod, p)
			}
			m.observe(info.FullMethod, start, err)
		}()
		return h(srv, ss)
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(grpcaddr.MaxMessageSize),
		grpc.MaxSendMsgSize(grpcaddr.MaxMessageSize),
		grpc.ChainUnaryInterceptor(unary),
		grpc.ChainStreamInterceptor(stream),
		// Clients may ping every 10s to keep idle connections through NAT.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
		// Large windows: loopback and LAN transfers of big blobs are
		// otherwise limited by flow control, not by the CPU.
		grpc.InitialWindowSize(4 << 20),
		grpc.InitialConnWindowSize(16 << 20),
		grpc.ReadBufferSize(256 << 10),
		grpc.WriteBufferSize(256 << 10),
	}
	return grpc.NewServer(append(opts, extra...)...)
}
