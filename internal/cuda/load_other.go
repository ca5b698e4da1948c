//go:build !linux || nogpu

package cuda

import "errors"

func load() (*api, error) {
	return nil, errors.New("this build has no GPU support (built for another system than Linux, or with the tag nogpu)")
}
