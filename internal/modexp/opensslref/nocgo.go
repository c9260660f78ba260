//go:build !cgo

// Package opensslref needs cgo; without it New fails.
package opensslref

import "errors"

// Version is empty without cgo.
func Version() string { return "" }

// Ref is unavailable without cgo.
type Ref struct{}

var errNoCgo = errors.New("opensslref: built without cgo")

// New fails without cgo.
func New(mod, base, exp []byte) (*Ref, error) { return nil, errNoCgo }

// Exp fails without cgo.
func (r *Ref) Exp() error { return errNoCgo }

// Result fails without cgo.
func (r *Ref) Result() ([]byte, error) { return nil, errNoCgo }

// Close does nothing.
func (r *Ref) Close() {}
