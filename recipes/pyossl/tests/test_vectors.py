"""hermetic_openssl against published test vectors (FIPS 180, RFC 4231,
the GCM specification's AES-256 cases). Runs with plain unittest in a fresh
virtual environment where only the wheel and cffi are installed."""

import os
import unittest

import hermetic_openssl as ho

H = bytes.fromhex


class Version(unittest.TestCase):
    def test_version_is_the_pinned_one(self):
        want = os.environ.get("HERMETIC_EXPECT_OPENSSL", "3.")
        self.assertTrue(ho.openssl_version().startswith("OpenSSL " + want), ho.openssl_version())
        self.assertEqual(ho.openssl_version_number() >> 28, 3)

    def test_module_is_not_loaded_from_the_source_tree(self):
        self.assertIn("site-packages", ho.__file__)


class Digests(unittest.TestCase):
    # FIPS 180-2 appendix examples; SHA3 from the NIST example values
    def test_sha256(self):
        self.assertEqual(ho.sha256(b"abc"), H("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
        self.assertEqual(ho.digest("SHA256", b""),
                         H("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
        self.assertEqual(ho.sha256(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                         H("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"))

    def test_sha512(self):
        self.assertEqual(ho.digest("SHA512", b"abc"), H(
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
            "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"))

    def test_sha3_256(self):
        self.assertEqual(ho.digest("SHA3-256", b"abc"),
                         H("3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"))

    def test_unknown_digest(self):
        with self.assertRaises(ValueError):
            ho.digest("NO-SUCH-DIGEST", b"x")


class Hmac(unittest.TestCase):
    # RFC 4231
    def test_case_1(self):
        self.assertEqual(ho.hmac("SHA256", b"\x0b" * 20, b"Hi There"),
                         H("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"))

    def test_case_2(self):
        self.assertEqual(ho.hmac("SHA256", b"Jefe", b"what do ya want for nothing?"),
                         H("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"))
        self.assertEqual(ho.hmac("SHA512", b"Jefe", b"what do ya want for nothing?"), H(
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
            "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"))


class Random(unittest.TestCase):
    def test_lengths_and_variety(self):
        self.assertEqual(ho.random_bytes(0), b"")
        a, b = ho.random_bytes(32), ho.random_bytes(32)
        self.assertEqual(len(a), 32)
        self.assertNotEqual(a, b)


class AesGcm(unittest.TestCase):
    # The GCM specification (McGrew & Viega), test cases 13-16 (AES-256)
    K0 = bytes(32)
    K = H("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
    IV = H("cafebabefacedbaddecaf888")
    P = H("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
          "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255")
    C = H("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
          "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad")

    def test_case_13_empty(self):
        self.assertEqual(ho.aes256gcm_encrypt(self.K0, bytes(12), b""), (b"", H("530f8afbc74536b9a963b4f1c4cb738b")))

    def test_case_14(self):
        ct, tag = ho.aes256gcm_encrypt(self.K0, bytes(12), bytes(16))
        self.assertEqual(ct, H("cea7403d4d606b6e074ec5d3baf39d18"))
        self.assertEqual(tag, H("d0d1c8a799996bf0265b98b5d48ab919"))

    def test_case_15(self):
        ct, tag = ho.aes256gcm_encrypt(self.K, self.IV, self.P)
        self.assertEqual(ct, self.C)
        self.assertEqual(tag, H("b094dac5d93471bdec1a502270e3cc6c"))
        self.assertEqual(ho.aes256gcm_decrypt(self.K, self.IV, ct, tag), self.P)

    def test_case_16_with_aad(self):
        aad = H("feedfacedeadbeeffeedfacedeadbeefabaddad2")
        ct, tag = ho.aes256gcm_encrypt(self.K, self.IV, self.P[:60], aad)
        self.assertEqual(ct, self.C[:60])
        self.assertEqual(tag, H("76fc6ece0f4e1768cddf8853bb2d551b"))
        self.assertEqual(ho.aes256gcm_decrypt(self.K, self.IV, ct, tag, aad), self.P[:60])

    def test_tampering_is_detected(self):
        ct, tag = ho.aes256gcm_encrypt(self.K, self.IV, self.P)
        bad = bytes([ct[0] ^ 1]) + ct[1:]
        with self.assertRaises(ho.InvalidTag):
            ho.aes256gcm_decrypt(self.K, self.IV, bad, tag)
        with self.assertRaises(ho.InvalidTag):
            ho.aes256gcm_decrypt(self.K, self.IV, ct, tag, b"other aad")

    def test_bad_key(self):
        with self.assertRaises(ValueError):
            ho.aes256gcm_encrypt(b"short", self.IV, b"x")


if __name__ == "__main__":
    unittest.main()
