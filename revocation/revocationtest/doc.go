// Package revocationtest provides an OCSP responder and CRL server for
// tests of code that uses package revocation, as net/http/httptest does
// for net/http. A [Responder] answers for one test CA (see
// auth/authtest) on a local HTTP server, and can be told to answer good,
// revoked or unknown, to serve stale or badly signed answers, to be slow
// or to be down. It is meant for tests only.
package revocationtest
