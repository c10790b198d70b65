/*
 * tls_probe.c — a library with a large thread-local block, dlopen'ed by
 * malloc_test.c. Too large for glibc's static TLS surplus, the block is
 * dynamic TLS: glibc allocates it with malloc from inside __tls_get_addr the
 * first time each thread touches it (a bootstrap path of the override).
 */
__thread char tls_probe_block[100000];

char *tls_probe_touch(void) {
    tls_probe_block[0] = 1;
    tls_probe_block[sizeof tls_probe_block - 1] = 2;
    return tls_probe_block;
}
