// Command p11shim is libtchsm.so, the PKCS#11 v2.40 module that presents a tchsm signing
// cluster as one HSM token. Build it with
//
//	go build -buildmode=c-shared -o libtchsm.so ./p11shim
//
// pkcs11.c holds the C entry points and the CK_FUNCTION_LIST; export.go is the thin layer that
// checks arguments, copies buffers in and out and maps errors to CKR_* values; the PKCS#11 state
// machine itself is the pure-Go package p11shim/token. See README.md for configuration.
package main

func main() {}
