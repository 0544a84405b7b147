//go:build !unix

package outfile

import "io/fs"

// links returns 1: hard link counts are not checked outside Unix.
func links(fs.FileInfo) uint64 { return 1 }
