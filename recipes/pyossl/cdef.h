/* What Python sees of the binding (cffi API mode). */
const char *OpenSSL_version(int type);
unsigned long OpenSSL_version_num(void);
#define OPENSSL_VERSION ...
#define OPENSSL_CFLAGS ...
#define OPENSSL_BUILT_ON ...
#define OPENSSL_PLATFORM ...

int hx_digest(const char *name, const unsigned char *data, size_t len,
              unsigned char *out, size_t outsize, size_t *outlen);
int hx_hmac(const char *digest, const unsigned char *key, size_t keylen,
            const unsigned char *data, size_t len,
            unsigned char *out, size_t outsize, size_t *outlen);
int hx_random(unsigned char *buf, int num);
int hx_aes256gcm_encrypt(const unsigned char *key, const unsigned char *iv, size_t ivlen,
                         const unsigned char *aad, size_t aadlen,
                         const unsigned char *pt, size_t ptlen,
                         unsigned char *ct, unsigned char *tag, size_t taglen);
int hx_aes256gcm_decrypt(const unsigned char *key, const unsigned char *iv, size_t ivlen,
                         const unsigned char *aad, size_t aadlen,
                         const unsigned char *ct, size_t ctlen,
                         const unsigned char *tag, size_t taglen, unsigned char *pt);
