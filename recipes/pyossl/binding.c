/* The C side of hermetic_openssl: thin, checked wrappers over OpenSSL 3's
 * one-shot EVP APIs. Every function returns 1 on success, 0 on a failed
 * authentication (decrypt) and -1 on any other error. */
#include <limits.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

static int hx_digest(const char *name, const unsigned char *data, size_t len,
                     unsigned char *out, size_t outsize, size_t *outlen)
{
    EVP_MD *md = EVP_MD_fetch(NULL, name, NULL);
    unsigned int n = 0;
    int ok;
    if (md == NULL)
        return -1;
    if ((size_t)EVP_MD_get_size(md) > outsize) {
        EVP_MD_free(md);
        return -1;
    }
    ok = EVP_Digest(data, len, out, &n, md, NULL);
    EVP_MD_free(md);
    *outlen = n;
    return ok == 1 ? 1 : -1;
}

static int hx_hmac(const char *digest, const unsigned char *key, size_t keylen,
                   const unsigned char *data, size_t len,
                   unsigned char *out, size_t outsize, size_t *outlen)
{
    unsigned char *r = EVP_Q_mac(NULL, "HMAC", NULL, digest, NULL, key, keylen,
                                 data, len, out, outsize, outlen);
    return r != NULL ? 1 : -1;
}

static int hx_random(unsigned char *buf, int num)
{
    return RAND_bytes(buf, num) == 1 ? 1 : -1;
}

static int hx_gcm(int enc, const unsigned char *key, const unsigned char *iv, size_t ivlen,
                  const unsigned char *aad, size_t aadlen,
                  const unsigned char *in, size_t inlen, unsigned char *out,
                  unsigned char *tag, size_t taglen)
{
    EVP_CIPHER_CTX *c;
    int n = 0, rc = -1;
    if (inlen > INT_MAX || aadlen > INT_MAX || ivlen == 0 || ivlen > INT_MAX
        || taglen < 4 || taglen > 16)
        return -1;
    c = EVP_CIPHER_CTX_new();
    if (c == NULL)
        return -1;
    if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1
        || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, (int)ivlen, NULL) != 1
        || EVP_CipherInit_ex(c, NULL, NULL, key, iv, enc) != 1)
        goto done;
    if (aadlen > 0 && EVP_CipherUpdate(c, NULL, &n, aad, (int)aadlen) != 1)
        goto done;
    if (inlen > 0 && EVP_CipherUpdate(c, out, &n, in, (int)inlen) != 1)
        goto done;
    if (enc) {
        if (EVP_CipherFinal_ex(c, out + n, &n) != 1
            || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, (int)taglen, tag) != 1)
            goto done;
        rc = 1;
    } else {
        if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, (int)taglen, tag) != 1)
            goto done;
        rc = EVP_CipherFinal_ex(c, out + n, &n) == 1 ? 1 : 0;
    }
done:
    EVP_CIPHER_CTX_free(c);
    return rc;
}

static int hx_aes256gcm_encrypt(const unsigned char *key, const unsigned char *iv, size_t ivlen,
                                const unsigned char *aad, size_t aadlen,
                                const unsigned char *pt, size_t ptlen,
                                unsigned char *ct, unsigned char *tag, size_t taglen)
{
    return hx_gcm(1, key, iv, ivlen, aad, aadlen, pt, ptlen, ct, tag, taglen);
}

static int hx_aes256gcm_decrypt(const unsigned char *key, const unsigned char *iv, size_t ivlen,
                                const unsigned char *aad, size_t aadlen,
                                const unsigned char *ct, size_t ctlen,
                                const unsigned char *tag, size_t taglen, unsigned char *pt)
{
    return hx_gcm(0, key, iv, ivlen, aad, aadlen, ct, ctlen, pt, (unsigned char *)tag, taglen);
}
