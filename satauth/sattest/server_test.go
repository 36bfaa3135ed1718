package sattest_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mqttauth/mqttauth/satauth/sattest"
)

func review(t *testing.T, srv *sattest.Server, token, bearer string) (int, string) {
	t.Helper()
	body := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + token + `","audiences":["aio-mq"]}}`
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL()+"/apis/authentication.k8s.io/v1/tokenreviews", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := srv.Client().Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	_, _ = out.ReadFrom(resp.Body)
	return resp.StatusCode, out.String()
}

func TestServer(t *testing.T) {
	srv := sattest.NewServer(t, sattest.Options{})
	srv.AddServiceAccount("ns", "sa", nil)
	tok := srv.Token("ns", "sa", sattest.TokenOptions{})

	if code, body := review(t, srv, tok, srv.BrokerToken()); code != 200 || !strings.Contains(body, `"authenticated":true`) ||
		!strings.Contains(body, "system:serviceaccount:ns:sa") {
		t.Fatalf("review: %d %s", code, body)
	}
	if code, _ := review(t, srv, tok, "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("wrong broker token: %d", code)
	}
	srv.Forbid(sattest.TokenReview, true)
	if code, _ := review(t, srv, tok, srv.BrokerToken()); code != http.StatusForbidden {
		t.Fatalf("forbidden: %d", code)
	}
	srv.Forbid(sattest.TokenReview, false)
	srv.Fail(http.StatusServiceUnavailable)
	if code, _ := review(t, srv, tok, srv.BrokerToken()); code != http.StatusServiceUnavailable {
		t.Fatalf("fail: %d", code)
	}
	srv.Fail(0)
	srv.DeleteServiceAccount("ns", "sa")
	if _, body := review(t, srv, tok, srv.BrokerToken()); !strings.Contains(body, `"authenticated":false`) {
		t.Fatalf("deleted account: %s", body)
	}
	srv.Hang(true)
	if code, _ := review(t, srv, tok, srv.BrokerToken()); code != 0 {
		t.Fatalf("hang answered %d", code)
	}
	srv.Hang(false)
	if got := srv.Calls(sattest.TokenReview); got != 6 {
		t.Fatalf("Calls = %d, want 6", got)
	}
	srv.Client().CloseIdleConnections()
}
