// Package cudatest gives tests the GPU, and skips them on a machine without
// one, unless QUIVER_REQUIRE_GPU=1 says that there must be one.
package cudatest

import (
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/quiver-ml/quiver/internal/cuda"
)

// RequireEnv is the variable that, set to 1, turns a missing GPU from a
// skip into a failure: on a machine that has one, a test that skipped would
// hide a broken probe.
const RequireEnv = "QUIVER_REQUIRE_GPU"

var open = sync.OnceValues(func() (*cuda.Device, error) { return cuda.Open(0) })

// Device returns the first GPU. Without one it skips the test, or fails it
// where RequireEnv is 1; an error other than cuda.ErrUnavailable (libraries
// that load but fail) always fails it.
func Device(tb testing.TB) *cuda.Device {
	tb.Helper()
	d, err := open()
	switch {
	case err == nil:
		tb.Logf("GPU: %s (%s), %s", d.Name, d.Arch, d.Versions)
		return d
	case errors.Is(err, cuda.ErrUnavailable) && os.Getenv(RequireEnv) != "1":
		tb.Skipf("%v (%s=1 makes this a failure)", err, RequireEnv)
	default:
		tb.Fatal(err)
	}
	return nil
}

// Available reports whether the machine has a GPU; where RequireEnv is 1,
// it fails the test if not.
func Available(tb testing.TB) bool {
	tb.Helper()
	_, err := open()
	if err != nil && (os.Getenv(RequireEnv) == "1" || !errors.Is(err, cuda.ErrUnavailable)) {
		tb.Fatal(err)
	}
	return err == nil
}
