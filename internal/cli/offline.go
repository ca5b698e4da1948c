package cli

import (
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/quiver-ml/quiver/store/offline"
)

// OpenOffline opens the offline store the --offline flag names: a file://
// URL, by default file://<data-dir>/offline.
func OpenOffline(raw, dataDir string) (*offline.Dir, error) {
	if raw == "" {
		return offline.NewDir(filepath.Join(dataDir, "offline"))
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "file" {
		return nil, fmt.Errorf("--offline %q: want file:///path (object stores are not supported by this build yet)", raw)
	}
	return offline.NewDir(u.Path)
}
