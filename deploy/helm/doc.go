// Package helm holds the tests of Quiver's Helm chart, in quiver/: they
// render it with Helm's engine for its default values and each values file
// of quiver/ci, lint it, decode every manifest strictly into its Kubernetes
// type and check what the binaries need of it, their flags read from the
// binaries themselves.
package helm
