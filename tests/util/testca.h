/*
 * tests/util/testca.h — a throw-away certificate authority for tests of mutual TLS and
 * signatures (the STS simulator, kc_cert, kc_sts): made with libcrypto at test time in a
 * temporary folder, so no key or certificate is ever committed.
 *
 * testca_make(dir) writes there:
 *   ca.pem                  the test CA's certificate (the simulator trusts it)
 *   server.pem, server.key  a server certificate for 127.0.0.1 / localhost
 *   client.pem, client.key  the "municipality's" function certificate, valid now
 *   client.p12, client.pass the same as PKCS#12 with its password ("test-p12-pass")
 *   expired.pem/.key        a client certificate that expired yesterday
 *   future.pem/.key         a client certificate valid only from tomorrow
 *   stranger.pem/.key       a client certificate from another CA, valid now
 * Keys, the PKCS#12 file and the password file are mode 0600.
 */
#ifndef KANAL_TEST_TESTCA_H
#define KANAL_TEST_TESTCA_H

/* Returns 0, or -1 after printing why. */
int testca_make(const char *dir);

#endif
