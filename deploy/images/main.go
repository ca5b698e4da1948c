// Command images builds the container images of Quiver's binaries (ingest,
// serve, backfill) without a container engine: each is a static
// (CGO_ENABLED=0, no GPU support) binary on an empty base, with an /etc/passwd naming the
// non-root user it runs as and the build machine's CA certificates, written
// as <binary>.tar, an OCI image layout in a tar (an "oci-archive": podman
// load, skopeo copy oci-archive:, containerd's ctr images import and
// docker load from Docker 25 take it).
//
//	go run ./deploy/images --out dist/images --version $(git describe --tags --always --dirty)
//
// Every image runs as 65532:65532 in /quiver, where ./data, the binaries'
// default --data-dir, lies; the root filesystem may be read-only once
// --data-dir and /tmp are mounted writable (the Helm chart does).
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where things lie in every image.
const (
	// User is the user and group the images run as: no root, no login.
	User = "65532:65532"
	// WorkDir is the working directory, owned by the user.
	WorkDir = "/quiver"
	// BinDir holds the binary.
	BinDir = "/usr/local/bin"
)

// binaries are the images built: a binary of cmd/ and the ports it listens on.
var binaries = []struct {
	name, description string
	ports             []string
}{
	{"ingest", "Quiver ingest: Kafka events to versioned, windowed features", []string{"9101/tcp"}},
	{"serve", "Quiver serve: online feature lookups and predictions over HTTP", []string{"8080/tcp"}},
	{"backfill", "Quiver backfill: training sets, replays, compaction of the offline store", nil},
}

// Options says what to build.
type Options struct {
	// Out is the directory the archives are written to, <name>.tar; it is
	// created if need be.
	Out string
	// Repo is the module's root, where cmd/<name> lies.
	Repo string
	// Registry prefixes the images' names: <Registry>/<name>:<Version>.
	// Default: quiver.
	Registry string
	// Version is the image tag and the version label (git describe).
	Version string
	// Source is the source repository's URL, for the source label.
	Source string
	// Revision is the commit the images are built from, if known.
	Revision string
	// Created is the images' creation time; zero is the epoch, so that
	// the same sources give the same images.
	Created time.Time
	// Arch is the GOARCH of the binaries and the images' architecture.
	// Default: this machine's.
	Arch string
	// CACerts is a PEM bundle installed as /etc/ssl/certs/ca-certificates.crt,
	// for TLS to an object store, Kafka or Redis; empty: none.
	CACerts string
}

func main() {
	opts := Options{}
	flag.StringVar(&opts.Out, "out", "dist/images", "directory to write <binary>.tar into")
	flag.StringVar(&opts.Repo, "repo", ".", "the module's root directory")
	flag.StringVar(&opts.Registry, "registry", "quiver", "image name prefix: <registry>/<binary>:<version>")
	flag.StringVar(&opts.Version, "version", "dev", "image tag and version label (git describe)")
	flag.StringVar(&opts.Source, "source", "https://github.com/quiver-ml/quiver", "source repository URL label")
	flag.StringVar(&opts.Revision, "revision", "", "commit the images are built from (revision label)")
	created := flag.Int64("created", 0, "creation time, Unix seconds (the commit's time keeps builds reproducible)")
	flag.StringVar(&opts.Arch, "arch", runtime.GOARCH, "GOARCH of the binaries and images")
	flag.StringVar(&opts.CACerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to install in the images; empty for none")
	flag.Parse()
	opts.Created = time.Unix(*created, 0).UTC()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	paths, err := Build(ctx, opts)
	for _, p := range paths {
		log.Info("image written", "path", p)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// Build compiles the binaries and writes one image archive per binary; it
// returns the archives' paths.
func Build(ctx context.Context, opts Options) ([]string, error) {
	if opts.Registry == "" {
		opts.Registry = "quiver"
	}
	if opts.Arch == "" {
		opts.Arch = runtime.GOARCH
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, err
	}
	binDir, err := os.MkdirTemp("", "quiver-images-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(binDir)
	if err := compile(ctx, opts, binDir); err != nil {
		return nil, err
	}
	base, err := baseLayer(opts)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, b := range binaries {
		ref, err := name.NewTag(fmt.Sprintf("%s/%s:%s", opts.Registry, b.name, opts.Version))
		if err != nil {
			return paths, fmt.Errorf("image name: %w", err)
		}
		img, err := image(opts, base, filepath.Join(binDir, b.name), b.name, b.description, b.ports)
		if err != nil {
			return paths, fmt.Errorf("image %s: %w", b.name, err)
		}
		path := filepath.Join(opts.Out, b.name+".tar")
		if err := writeArchive(path, filepath.Join(binDir, b.name+".layout"), ref, img, opts.Created); err != nil {
			return paths, fmt.Errorf("write %s: %w", path, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// compile builds static binaries of every image into dir, without GPU
// support (the tag nogpu), which would link them to the C library: an
// empty base has none, and no CUDA libraries.
func compile(ctx context.Context, opts Options, dir string) error {
	args := []string{"build", "-trimpath", "-tags=nogpu", "-ldflags=-s -w", "-o", dir + string(filepath.Separator)}
	for _, b := range binaries {
		args = append(args, "./cmd/"+b.name)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = opts.Repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+opts.Arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}

// image is one binary's image: the base layer, the binary's layer and a
// config that runs it as User.
func image(opts Options, base v1.Layer, bin, name, description string, ports []string) (v1.Image, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	binLayer, err := layer(opts.Created, []entry{{path: BinDir + "/" + name, mode: 0o755, data: data}})
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{CreatedBy: "quiver images: users, CA certificates, " + WorkDir, Created: v1.Time{Time: opts.Created}}},
		mutate.Addendum{Layer: binLayer, History: v1.History{CreatedBy: "quiver images: " + BinDir + "/" + name, Created: v1.Time{Time: opts.Created}}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", opts.Arch
	cf.Created = v1.Time{Time: opts.Created}
	labels := map[string]string{
		"org.opencontainers.image.title":       "quiver-" + name,
		"org.opencontainers.image.description": description,
		"org.opencontainers.image.source":      opts.Source,
		"org.opencontainers.image.version":     opts.Version,
		"org.opencontainers.image.created":     opts.Created.Format(time.RFC3339),
	}
	if opts.Revision != "" {
		labels["org.opencontainers.image.revision"] = opts.Revision
	}
	cf.Config = v1.Config{
		Entrypoint: []string{BinDir + "/" + name},
		User:       User,
		WorkingDir: WorkDir,
		Env:        []string{"PATH=" + BinDir},
		Labels:     labels,
	}
	if len(ports) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range ports {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	// The same labels as manifest annotations, where registries show them.
	return mutate.Annotations(img, labels).(v1.Image), nil
}

// writeArchive writes img as an OCI image layout, in dir, then as a tar of
// the layout at path (an "oci-archive"), named ref by the annotations
// containerd, docker load and podman read.
func writeArchive(path, dir string, ref name.Tag, img v1.Image, created time.Time) error {
	l, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	err = l.AppendImage(img, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          ref.Name(),
		"org.opencontainers.image.ref.name": ref.TagStr(),
	}))
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: created, Format: tar.FormatPAX}
		if e.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			return tw.WriteHeader(h)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// baseLayer holds what every image shares: the user in /etc/passwd and
// /etc/group, the CA certificates and the working directory.
func baseLayer(opts Options) (v1.Layer, error) {
	entries := []entry{
		{path: "/etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nquiver:x:65532:65532:quiver:" + WorkDir + ":/sbin/nologin\n")},
		{path: "/etc/group", mode: 0o644, data: []byte("root:x:0:\nquiver:x:65532:\n")},
		{path: WorkDir, dir: true, mode: 0o755, owner: 65532},
		{path: "/tmp", dir: true, mode: 0o1777},
	}
	if opts.CACerts != "" {
		pem, err := os.ReadFile(opts.CACerts)
		if err != nil {
			return nil, fmt.Errorf("CA certificates: %w", err)
		}
		entries = append(entries, entry{path: "/etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: pem})
	}
	return layer(opts.Created, entries)
}

// entry is a file or directory of a layer.
type entry struct {
	path  string
	dir   bool
	mode  int64
	owner int // uid and gid
	data  []byte
}

// layer is a gzipped tar layer of entries, parent directories added,
// every time set to created so that a layer's digest depends on its
// contents alone.
func layer(created time.Time, entries []entry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	var addDirs func(dir string) error
	addDirs = func(dir string) error {
		if dir == "/" || seen[dir] {
			return nil
		}
		if err := addDirs(filepath.Dir(dir)); err != nil {
			return err
		}
		seen[dir] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir[1:] + "/", Mode: 0o755, ModTime: created, Format: tar.FormatPAX})
	}
	for _, e := range entries {
		if err := addDirs(filepath.Dir(e.path)); err != nil {
			return nil, err
		}
		h := &tar.Header{Name: e.path[1:], Mode: e.mode, Uid: e.owner, Gid: e.owner, ModTime: created, Format: tar.FormatPAX}
		if e.dir {
			seen[e.path] = true
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}
