// Package docker holds pinwall's container image definition and the
// compose file of the visibility topology, embedded so the container runner
// builds exactly what this directory describes.
//
// The image is FROM scratch: one static binary (CGO_ENABLED=0), no base
// image, nothing to pull.
package docker

import _ "embed"

// Dockerfile is the image definition; the build context holds it and the
// pinwall binary.
//
//go:embed Dockerfile
var Dockerfile []byte
