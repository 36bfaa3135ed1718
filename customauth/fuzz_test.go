package customauth_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/customauth"
)

// answer is a RoundTripper that answers every request with one response,
// in process.
type answer struct {
	status int
	ctype  string
	body   []byte
}

func (a answer) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: a.status,
		Header:     http.Header{"Content-Type": {a.ctype}},
		Body:       io.NopCloser(bytes.NewReader(a.body)),
		Request:    req,
	}, nil
}

// FuzzResponse feeds arbitrary answers to the Authenticator: it never
// panics, and a Pass only comes from a 200 with a JSON object holding an
// attributes object of strings.
func FuzzResponse(f *testing.F) {
	f.Add(200, "application/json", []byte(`{"expiry":"2030-05-08T20:04:16+00:00","attributes":{"a":"b"}}`))
	f.Add(200, "application/json", []byte(`{"attributes":{"a":1}}`))
	f.Add(403, "application/json", []byte(`{"reason":134,"message":"x"}`))
	f.Add(422, "application/json", []byte(`{"supportedVersions":["0.5.0"]}`))
	f.Add(200, "text/plain", []byte(`{}`))
	f.Add(500, "", []byte(``))
	f.Fuzz(func(t *testing.T, status int, ctype string, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		a, err := customauth.New(customauth.Config{
			Endpoint:  "https://auth.invalid/",
			Transport: answer{status: status, ctype: ctype, body: body},
			Logger:    discard,
			Breaker:   customauth.BreakerConfig{Disabled: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		r := authenticate(a, connectReq("alice", "secret"))
		switch r.Outcome {
		case auth.Pass:
			if status != 200 || r.Principal == nil || !bytes.Contains(body, []byte(`"attributes"`)) {
				t.Fatalf("Pass from status %d body %q", status, body)
			}
		case auth.Fail:
			if status != 403 || !r.Code.ValidConnackFailure() {
				t.Fatalf("Fail %v from status %d", r.Code, status)
			}
		case auth.Unavailable:
			if r.Err == nil {
				t.Fatal("Unavailable without an error")
			}
			if bytes.Contains([]byte(r.Err.Error()), []byte("secret")) {
				t.Fatal("a credential in an error")
			}
		default:
			t.Fatalf("outcome %v: custom authentication is always relevant", r.Outcome)
		}
	})
}
