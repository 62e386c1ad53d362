package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	bspb "google.golang.org/genproto/googleapis/bytestream"

	"github.com/kiln-build/kiln/cas"
	"github.com/kiln-build/kiln/cas/actioncache"
	"github.com/kiln-build/kiln/cas/casserver"
	"github.com/kiln-build/kiln/cas/disk"
	"github.com/kiln-build/kiln/cas/memory"
	"github.com/kiln-build/kiln/internal/grpcserver"
)

// maxBatchBytes is the batch limit announced in Capabilities: 4 MiB minus
// room for the messages' own overhead, so that a full BatchReadBlobs
// response still fits the 4 MiB that clients accept by default.
const maxBatchBytes = 4<<20 - 64<<10

// shutdownGrace is how long in-flight RPCs get to finish on SIGTERM.
const shutdownGrace = 20 * time.Second

func newServerCmd() *cobra.Command {
	var configPath string
	var workers int
	flags := defaultConfig().Server
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the kiln server: CAS, ByteStream, action cache (gRPC) and /metrics (HTTP)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			// Flags given on the command line override the file.
			f := cmd.Flags()
			override := func(name string, dst *string, v string) {
				if f.Changed(name) {
					*dst = v
				}
			}
			override("grpc-listen", &cfg.Server.GRPCListen, flags.GRPCListen)
			override("http-listen", &cfg.Server.HTTPListen, flags.HTTPListen)
			override("data", &cfg.Server.Data, flags.Data)
			override("store", &cfg.Server.Store, flags.Store)
			override("max-size", &cfg.Server.MaxSize, flags.MaxSize)
			override("max-blob-size", &cfg.Server.MaxBlobSize, flags.MaxBlobSize)
			override("log-level", &cfg.Server.LogLevel, flags.LogLevel)
			override("sandbox", &cfg.Server.Sandbox, flags.Sandbox)
			override("platform-grace", &cfg.Server.PlatformGrace, flags.PlatformGrace)
			if f.Changed("workers") {
				cfg.Server.Workers = &workers
			}
			s, err := cfg.Server.parse()
			if err != nil {
				return fmt.Errorf("server: %w", err)
			}
			return runServer(cmd.Context(), s)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "configuration file (YAML; see configs/server.yaml)")
	f.StringVar(&flags.GRPCListen, "grpc-listen", flags.GRPCListen, "gRPC listen address")
	f.StringVar(&flags.HTTPListen, "http-listen", flags.HTTPListen, "HTTP listen address (/healthz, /metrics)")
	f.StringVar(&flags.Data, "data", flags.Data, "data directory of the disk store")
	f.StringVar(&flags.Store, "store", flags.Store, "storage backend: disk or memory")
	f.StringVar(&flags.MaxSize, "max-size", flags.MaxSize, "maximum bytes stored, e.g. 10GiB; LRU eviction beyond")
	f.StringVar(&flags.MaxBlobSize, "max-blob-size", flags.MaxBlobSize, "refuse single blobs larger than this (default: no limit)")
	f.StringVar(&flags.LogLevel, "log-level", flags.LogLevel, "debug, info, warn or error")
	f.StringVar(&flags.Sandbox, "sandbox", flags.Sandbox, "in-process worker: auto (namespace sandbox if possible), on (sandbox or refuse to start) or none (directly on the host)")
	f.IntVar(&workers, "workers", runtime.NumCPU(), "action slots of the in-process worker; 0 disables it")
	f.StringVar(&flags.PlatformGrace, "platform-grace", flags.PlatformGrace,
		"how long after start-up (or after the last matching worker left) an action no worker can run gets UNAVAILABLE rather than FAILED_PRECONDITION")
	return cmd
}

// stores are the two backends of a server and how to close them.
type stores struct {
	blobs, results cas.BlobStore
	close          func() error
}

// openStores builds the CAS and action-cache backends. The action cache
// gets a twentieth of the space: its entries are small. On disk, small CAS
// blobs go through a write-back buffer (see cas.WriteBackStore).
func openStores(ctx context.Context, s serverSettings, log *slog.Logger) (stores, error) {
	acSize := s.maxSize / 20
	casSize := s.maxSize - acSize
	switch s.store {
	case "memory":
		return stores{blobs: memory.New(casSize), results: memory.New(acSize), close: func() error { return nil }}, nil
	case "disk":
		blobDisk, err := disk.New(ctx, filepath.Join(s.data, "cas"), casSize, disk.WithLogger(log))
		if err != nil {
			return stores{}, err
		}
		results, err := disk.New(ctx, filepath.Join(s.data, "ac"), acSize, disk.WithLogger(log))
		if err != nil {
			blobDisk.Close()
			return stores{}, err
		}
		st := stores{blobs: blobDisk, results: results, close: func() error {
			return errors.Join(blobDisk.Close(), results.Close())
		}}
		if s.writeBackBuffer > 0 {
			// Action results are small too; a lost one is a cache miss.
			wb := cas.NewWriteBackStore(blobDisk, 64<<10, s.writeBackBuffer, runtime.NumCPU(), log)
			wr := cas.NewWriteBackStore(results, 64<<10, s.writeBackBuffer/8, 1, log)
			st.blobs, st.results = wb, wr
			st.close = func() error {
				wb.Close() // writes what it buffered before the disk closes
				wr.Close()
				return errors.Join(blobDisk.Close(), results.Close())
			}
		}
		return st, nil
	}
	return stores{}, fmt.Errorf("store %q: want disk or memory", s.store)
}

func runServer(ctx context.Context, s serverSettings) error {
	var level slog.Level
	level.UnmarshalText([]byte(s.logLevel)) // validated by parse
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	start := time.Now()
	st, err := openStores(ctx, s, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.close(); err != nil {
			log.Error("closing stores", "err", err)
		}
	}()
	blobs := st.blobs
	if s.maxBlobSize > 0 {
		blobs = cas.NewSizeLimitStore(blobs, s.maxBlobSize)
	}
	blobs = cas.NewVerifyingStore(cas.NewEmptyBlobStore(blobs))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	gl, err := net.Listen("tcp", s.grpcListen)
	if err != nil {
		return fmt.Errorf("grpc listen: %w", err)
	}
	hl, err := net.Listen("tcp", s.httpListen)
	if err != nil {
		gl.Close()
		return fmt.Errorf("http listen: %w", err)
	}

	cache := actioncache.New(st.results, blobs)
	ex, err := newExecutionServer(ctx, s, blobs, cache, log, gl.Addr().String())
	if err != nil {
		gl.Close()
		hl.Close()
		return err
	}
	defer ex.stop()

	gs := grpcserver.New(log, reg)
	bs := casserver.NewByteStream(blobs, s.resumeWindow)
	repb.RegisterCapabilitiesServer(gs, casserver.NewCapabilities(maxBatchBytes, ex.capabilities))
	repb.RegisterContentAddressableStorageServer(gs, casserver.NewCAS(blobs, maxBatchBytes))
	repb.RegisterActionCacheServer(gs, actioncache.NewService(cache))
	bspb.RegisterByteStreamServer(gs, bs)
	ex.register(gs)

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", statusHandler(ex.sched, start))
	registerSchedulerMetrics(reg, ex.sched)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Profiles for the operator (the HTTP port is loopback by default).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(gl) }()
	go func() {
		if err := hs.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			return
		}
		errc <- nil
	}()
	log.Info("kiln server started", "grpc", gl.Addr().String(), "http", hl.Addr().String(),
		"store", s.store, "data", s.data, "max_size", s.maxSize, "workers", s.workers, "startup", time.Since(start).Round(time.Millisecond))

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("kiln server stopping")
	case serveErr = <-errc:
		log.Error("server failed", "err", serveErr)
	}
	// The in-process worker stops first (its actions are cancelled, as a
	// remote worker's would be on a restart), and parked uploads are
	// abandoned, so GracefulStop only waits for RPCs really in progress.
	ex.stop()
	bs.Close()
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(shutdownGrace):
		log.Warn("in-flight RPCs did not finish in time; stopping hard")
		gs.Stop()
		<-stopped
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	return serveErr
}
