/* A program linked against the very libcrypto.a the wheel's extension links:
 * prints OpenSSL's version and known digests, so a build for another CPU can
 * be run (under qemu) and checked. */
#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

static int digest(const char *name, const char *msg) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!EVP_Digest(msg, strlen(msg), md, &len, EVP_get_digestbyname(name), NULL)) {
        fprintf(stderr, "%s failed\n", name);
        return 1;
    }
    printf("%s(\"%s\") = ", name, msg);
    for (unsigned int i = 0; i < len; i++) printf("%02x", md[i]);
    printf("\n");
    return 0;
}

int main(void) {
    printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
    return digest("SHA256", "abc") | digest("SHA3-256", "abc") | digest("SHA512", "");
}
