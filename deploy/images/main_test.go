package main

import (
	"archive/tar"
	"context"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestBuild builds the images as make images does, loads each archive back
// and runs the binary it holds.
func TestBuild(t *testing.T) {
	out := t.TempDir()
	created := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	paths, err := Build(context.Background(), Options{
		Out: out, Repo: "../..", Version: "v1.2.3-4-gabcdef0", Source: "https://example.com/quiver",
		Revision: "abcdef0", Created: created, CACerts: writeFile(t, "-----BEGIN CERTIFICATE-----\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != len(binaries) {
		t.Fatalf("%d images, want %d", len(paths), len(binaries))
	}
	for i, b := range binaries {
		t.Run(b.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, f := range extract(t, open(t, paths[i])) {
				if f.hdr.Typeflag == tar.TypeDir {
					continue
				}
				if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, name), f.data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			idx, err := layout.ImageIndexFromPath(dir)
			if err != nil {
				t.Fatal(err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(im.Manifests) != 1 || im.Manifests[0].Annotations["io.containerd.image.name"] != "index.docker.io/quiver/"+b.name+":v1.2.3-4-gabcdef0" {
				t.Fatalf("index %+v, want one image named quiver/%s:v1.2.3-4-gabcdef0", im.Manifests, b.name)
			}
			img, err := idx.Image(im.Manifests[0].Digest)
			if err != nil {
				t.Fatal(err)
			}
			if mt, err := img.MediaType(); err != nil || mt != types.OCIManifestSchema1 {
				t.Errorf("media type %s (%v), want an OCI manifest", mt, err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			bin := BinDir + "/" + b.name
			c := cf.Config
			if !slices.Equal(c.Entrypoint, []string{bin}) || c.User != "65532:65532" || c.WorkingDir != WorkDir {
				t.Errorf("entrypoint %q, user %q, working dir %q", c.Entrypoint, c.User, c.WorkingDir)
			}
			if cf.OS != "linux" || !cf.Created.Equal(created) {
				t.Errorf("os %s, created %v", cf.OS, cf.Created)
			}
			for k, v := range map[string]string{
				"org.opencontainers.image.version":  "v1.2.3-4-gabcdef0",
				"org.opencontainers.image.source":   "https://example.com/quiver",
				"org.opencontainers.image.revision": "abcdef0",
			} {
				if c.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
				}
			}
			m, err := img.Manifest()
			if err != nil || m.Annotations["org.opencontainers.image.version"] != "v1.2.3-4-gabcdef0" {
				t.Errorf("manifest annotations %v (%v)", m.Annotations, err)
			}
			var ports []string
			for p := range c.ExposedPorts {
				ports = append(ports, p)
			}
			if !slices.Equal(ports, b.ports) {
				t.Errorf("exposed ports %v, want %v", ports, b.ports)
			}

			files := extract(t, mutate.Extract(img))
			if passwd := string(files["etc/passwd"].data); !strings.Contains(passwd, ":65532:65532:") {
				t.Errorf("/etc/passwd has no user 65532:\n%s", passwd)
			}
			if f := files[WorkDir[1:]]; f == nil || f.hdr.Uid != 65532 {
				t.Errorf("%s is not the user's", WorkDir)
			}
			if f := files["etc/ssl/certs/ca-certificates.crt"]; f == nil {
				t.Error("no CA certificates")
			}
			f := files[bin[1:]]
			if f == nil || f.hdr.Mode&0o111 == 0 {
				t.Fatalf("no executable %s", bin)
			}
			exe := writeFile(t, string(f.data))
			if err := os.Chmod(exe, 0o755); err != nil {
				t.Fatal(err)
			}
			// Static: an empty image has no dynamic loader.
			e, err := elf.Open(exe)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if slices.ContainsFunc(e.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
				t.Errorf("%s is dynamically linked", bin)
			}
			want := "--definitions" // every flag listed; backfill lists its subcommands
			if b.name == "backfill" {
				want = "backfill dataset"
			}
			help, err := exec.Command(exe, "--help").CombinedOutput()
			if err != nil || !strings.Contains(string(help), want) {
				t.Errorf("%s --help: %v\n%s", bin, err, help)
			}
		})
	}
}

// file is a regular file or directory of an image's filesystem.
type file struct {
	hdr  *tar.Header
	data []byte
}

func open(t *testing.T, path string) io.ReadCloser {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// extract reads a tar: an archive, or an image's flattened filesystem.
func extract(t *testing.T, r io.ReadCloser) map[string]*file {
	t.Helper()
	defer r.Close()
	files := map[string]*file{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = &file{h, data}
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
