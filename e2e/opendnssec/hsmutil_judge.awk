# hsmutil_judge.awk: judge the RSA part of `ods-hsmutil test REPO` output.
# usage: awk -v min=BITS -v prog=NAME -f hsmutil_judge.awk OUTPUT
#
# ods-hsmutil (libhsm/src/bin/hsmtest.c) tests RSA 512, 768, 1024, 1536, 2048
# and 4096 bits: generate, extract id, sign with SHA-1 and SHA-256 (and
# SHA-512 from 1024 bits on), delete. Each step prints "... OK" or
# "... Failed[,:] error: N". A block starts at "Generating N-bit RSA key..."
# and ends at the next "Generating".
#
# Verdict per size:
#   ok        generation and every later step printed OK;
#   rejected  generation failed and the size is below min (tchsm supports
#             1024..4096 and must refuse smaller keys) - not a failure;
#   FAIL      anything else, including a size missing from the output
#             (ods-hsmutil crashed or was killed).
# Exit 0 when no size failed and at least one passed. DSA, GOST, EC, EdDSA
# and random tests are not judged.
function close_block() {
	if (bits == "")
		return
	seen[bits] = 1
	want_sigs = (bits + 0 >= 1024) ? 3 : 2 # SHA-512 only from 1024 bits on
	if (!genok) {
		if (bits + 0 < min + 0) {
			printf "%s: RSA %4d: key generation rejected (allowed below %d bits)\n", prog, bits, min
			rejected++
		} else {
			printf "%s: RSA %4d: FAIL key generation\n", prog, bits
			bad++
		}
	} else if (fails > 0 || !idok || !delok || sigs != want_sigs) {
		printf "%s: RSA %4d: FAIL (id %s, %d/%d signatures, delete %s, %d failed steps)\n", prog, bits, idok ? "ok" : "missing", sigs, want_sigs, delok ? "ok" : "missing", fails
		bad++
	} else {
		printf "%s: RSA %4d: ok (%d signatures)\n", prog, bits, sigs
		good++
	}
	bits = ""
}

/^Generating / { close_block() }

/^Generating [0-9]+-bit RSA key\.\.\./ {
	bits = $2
	sub(/-bit/, "", bits)
	genok = ($0 ~ /\.\.\. OK$/)
	idok = delok = fails = sigs = 0
	next
}

bits == "" { next }
/\.\.\. *Failed/ { fails++; next }
/^Extracting key identifier\.\.\. OK, [0-9a-f]+$/ { idok = 1; next }
/^Signing \(RSA\/SHA(1|256|512)\) with key\.\.\. OK$/ { sigs++; next }
/^Signing / { fails++; next } # neither OK nor Failed: output cut short
/^Deleting key\.\.\. OK$/ { delok = 1; next }

END {
	close_block()
	n = split("512 768 1024 1536 2048 4096", want, " ")
	for (i = 1; i <= n; i++)
		if (!(want[i] in seen)) {
			printf "%s: RSA %4d: FAIL missing from output (ods-hsmutil stopped early?)\n", prog, want[i]
			bad++
		}
	printf "%s: RSA summary: %d ok, %d rejected below %d bits, %d failed\n", prog, good, rejected, min, bad
	exit (bad > 0 || good == 0) ? 1 : 0
}
