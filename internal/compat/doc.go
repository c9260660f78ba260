// Package compat holds the compatibility tests: data written by a released tchsm must keep
// loading, and its keys must keep signing, with the current code.
//
// testdata/a807de5 was written by commit a807de5 (see its README.md): a 3-of-5 cluster's
// manifest and identities, the share stores of nodes 1, 3 and 5, three dealer-signed key
// records, a share delivery per key, and signatures made by that release. The package has no
// code of its own; its tests use only the public APIs the node and the client use.
package compat
