#!/usr/bin/env python3
"""Writes kat.json, the known answers of modexp_test.go, with Python's own pow() (an
implementation independent of both engines). Deterministic: python3 gen_kat.py > kat.json"""
import json
import random
import sys

rng = random.Random(17)
cases = []
for bits in (1024, 2048, 3072, 4096):
    size = bits // 8
    full = 1 << bits
    for _ in range(3):
        n = rng.getrandbits(bits) | (1 << (bits - 1)) | 1
        b = rng.randrange(n)
        e = rng.getrandbits(bits)
        cases.append((bits, n, b, e, size))
    e = rng.getrandbits(bits + 512)  # as long as Prove's exponent: the modulus + 512 bits
    cases.append((bits, n, b, e, size + 64))
    cases.append((bits, n, b, 0, size))  # zero exponent, full length
    cases.append((bits, n, 0, e % full, size))
    cases.append((bits, n, 1, e % full, size))
    cases.append((bits, n, n - 1, (e % full) | 1, size))
    cases.append((bits, n, b, full - 1, size))  # all ones
h = lambda v, l: format(v, "x").zfill(2 * l)
out = [dict(bits=bits, n=h(n, bits // 8), base=h(b, bits // 8), exp=h(e, l), result=h(pow(b, e, n), bits // 8))
       for bits, n, b, e, l in cases]
json.dump(out, sys.stdout, indent=1)
