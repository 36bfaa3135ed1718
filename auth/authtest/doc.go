// Package authtest provides utilities for testing code that uses package
// auth, as net/http/httptest does for net/http: a fake clock that fires
// timers when told, a Conn that records how a session ended, and more. It
// is meant for tests only.
package authtest
