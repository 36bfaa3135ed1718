package throttle_test

import (
	"context"
	"fmt"
	"net"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/throttle"
)

// The throttle wraps the chain: past three failures from one address, the
// chain is no longer asked.
func ExampleNew() {
	calls := 0
	passwords := auth.AuthenticatorFunc(func(_ context.Context, req *auth.Request) auth.Result {
		calls++
		if string(req.Password) == "secret" {
			return auth.PassResult(auth.NewPrincipal(auth.PrincipalInfo{Username: req.Username}))
		}
		return auth.FailResult(auth.BadUserNameOrPassword, nil)
	})
	th, err := throttle.New(auth.Chain{passwords}, throttle.Config{Address: throttle.Limit{Burst: 3}, DisableIdentity: true})
	if err != nil {
		panic(err)
	}
	from := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 40000}
	for range 5 {
		r := th.Authenticate(context.Background(), &auth.Request{Username: "alice", HasUsername: true,
			Password: []byte("guess"), HasPassword: true, RemoteAddr: from})
		fmt.Println(r.Code)
	}
	fmt.Println("backend calls:", calls)
	// Output:
	// Bad User Name or Password (0x86)
	// Bad User Name or Password (0x86)
	// Bad User Name or Password (0x86)
	// Connection rate exceeded (0x9f)
	// Connection rate exceeded (0x9f)
	// backend calls: 3
}
