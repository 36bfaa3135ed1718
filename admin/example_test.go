package admin_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/mqttauth/mqttauth/admin"
)

func Example() {
	truststore := admin.NewGate("truststore")
	h, err := admin.New(admin.Config{Checks: []admin.Check{truststore.Check()}})
	if err != nil {
		panic(err)
	}
	ready := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code
	}
	fmt.Println(ready())
	truststore.Open() // after truststore.New succeeded
	fmt.Println(ready())
	// Output:
	// 503
	// 200
}
