// A test-only lazy-loading snapshotter: stargz-snapshotter's fs, fs/source and
// snapshot packages (Debian's golang-github-containerd-stargz-snapshotter-dev 0.12)
// served over containerd's snapshots gRPC API through contrib/snapshotservice.
// Production runs the upstream containerd-stargz-grpc release instead; this exists
// because the library's `service` package needs the CRI API, which Debian lacks.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/reference"
	"github.com/containerd/containerd/remotes/docker"
	stargzfs "github.com/containerd/stargz-snapshotter/fs"
	"github.com/containerd/stargz-snapshotter/fs/config"
	"github.com/containerd/stargz-snapshotter/fs/layer"
	"github.com/containerd/stargz-snapshotter/fs/source"
	snbase "github.com/containerd/stargz-snapshotter/snapshot"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
)

// The snapshot labels containerd's CRI plugin sets on a pull when
// disable_snapshot_annotations = false (pkg/snapshotters/annotations.go). Copied from
// stargz-snapshotter 0.12.0 service/cri.go (Debian golang-github-containerd-stargz-snapshotter-dev
// 0.12.0-2), whose package cannot be built here: it needs the CRI API, which Debian lacks.
const (
	criRefLabel    = "containerd.io/snapshot/cri.image-ref"
	criDigestLabel = "containerd.io/snapshot/cri.layer-digest"
	criLayersLabel = "containerd.io/snapshot/cri.image-layers"
)

// sourceFromCRILabels is service/cri.go's sourceFromCRILabels.
func sourceFromCRILabels(hosts source.RegistryHosts) source.GetSources {
	return func(labels map[string]string) ([]source.Source, error) {
		refStr, ok := labels[criRefLabel]
		if !ok {
			return nil, fmt.Errorf("reference hasn't been passed")
		}
		refspec, err := reference.Parse(refStr)
		if err != nil {
			return nil, err
		}
		digestStr, ok := labels[criDigestLabel]
		if !ok {
			return nil, fmt.Errorf("digest hasn't been passed")
		}
		target, err := digest.Parse(digestStr)
		if err != nil {
			return nil, err
		}
		var others []digest.Digest
		if l, ok := labels[criLayersLabel]; ok {
			for _, s := range strings.Split(l, ",") {
				d, err := digest.Parse(s)
				if err != nil {
					return nil, err
				}
				if d != target {
					others = append(others, d)
				}
			}
		}
		var layers []ocispec.Descriptor
		for _, d := range append([]digest.Digest{target}, others...) {
			layers = append(layers, ocispec.Descriptor{Digest: d})
		}
		return []source.Source{{Hosts: hosts, Name: refspec, Target: ocispec.Descriptor{Digest: target}, Manifest: ocispec.Manifest{Layers: layers}}}, nil
	}
}

// firstSource is service/service.go's sources: the first provider that understands the labels.
func firstSource(ps ...source.GetSources) source.GetSources {
	return func(labels map[string]string) ([]source.Source, error) {
		var errs []string
		for _, p := range ps {
			src, err := p(labels)
			if err == nil {
				return src, nil
			}
			errs = append(errs, err.Error())
		}
		return nil, fmt.Errorf("no source: %s", strings.Join(errs, "; "))
	}
}

func main() {
	address := flag.String("address", "/run/apparate-stargz/stargz.sock", "gRPC socket")
	root := flag.String("root", "/var/lib/apparate-stargz", "state directory")
	plainHTTP := flag.String("plain-http", "", "comma-separated hosts reached over plain HTTP")
	mirrors := flag.String("mirrors", "", "comma-separated host=mirror pairs (lazy fetches use the mirror first)")
	flag.Parse()
	ctx := context.Background()

	plain := map[string]bool{}
	for _, h := range strings.Split(*plainHTTP, ",") {
		if h != "" {
			plain[h] = true
		}
	}
	mirrorOf := map[string]string{}
	for _, kv := range strings.Split(*mirrors, ",") {
		if i := strings.Index(kv, "="); i > 0 {
			mirrorOf[kv[:i]] = kv[i+1:]
		}
	}
	// A nil Transport panics in 0.12: give every host a real client.
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 8, IdleConnTimeout: 90 * time.Second}}
	hostFor := func(host string) docker.RegistryHost {
		scheme := "https"
		if plain[host] {
			scheme = "http"
		}
		if host == "docker.io" {
			host = "registry-1.docker.io"
		}
		return docker.RegistryHost{Client: client, Host: host, Scheme: scheme, Path: "/v2", Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve}
	}
	hosts := func(ref reference.Spec) ([]docker.RegistryHost, error) {
		h := ref.Hostname()
		var out []docker.RegistryHost
		if m, ok := mirrorOf[h]; ok {
			out = append(out, hostFor(m))
		}
		return append(out, hostFor(h)), nil
	}

	// As the upstream service does (service/service.go): CRI's labels first, then the
	// default (ctr-remote) ones. Without the CRI source a kubelet's pull is never lazy.
	fs, err := stargzfs.NewFilesystem(filepath.Join(*root, "stargz"), config.Config{},
		stargzfs.WithGetSources(firstSource(sourceFromCRILabels(hosts), source.FromDefaultLabels(hosts))),
		stargzfs.WithOverlayOpaqueType(layer.OverlayOpaqueTrusted))
	if err != nil {
		fmt.Fprintln(os.Stderr, "filesystem:", err)
		os.Exit(1)
	}
	sn, err := snbase.NewSnapshotter(ctx, filepath.Join(*root, "snapshotter"), fs, snbase.AsynchronousRemove)
	if err != nil {
		fmt.Fprintln(os.Stderr, "snapshotter:", err)
		os.Exit(1)
	}
	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(sn))
	if err := os.MkdirAll(filepath.Dir(*address), 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = os.Remove(*address)
	l, err := net.Listen("unix", *address)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		rpc.GracefulStop()
		_ = sn.Close()
	}()
	fmt.Println("serving", *address)
	if err := rpc.Serve(l); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
