//go:build !cgo

// Package openssl links libcrypto's constant-time exponentiation as modexp's "openssl" engine
// when built with cgo; without cgo it links nothing and the node uses the "bigmod" engine (see
// package modexp). scripts/build-binary.sh builds with cgo.
package openssl

// Linked reports whether the "openssl" engine is linked (built with cgo).
const Linked = false

// Version is empty without cgo.
func Version() string { return "" }
