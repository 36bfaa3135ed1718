// Package authserver is a reference custom authentication server: a real
// HTTPS server that implements the Azure IoT Operations custom
// authentication API 0.5.0 from a table of users and tokens.
//
// Use it to try the customauth package, in tests of a broker, or as the
// starting point of a server of your own. Switches make it deny everyone,
// answer 422 (unsupported version), answer 500, hang, or go down and come
// back on the same address, so that a broker's fallback and circuit breaker
// can be tested against real sockets.
//
// A CONNECT request passes when its user name and password match a User,
// or when its enhancedAuthentication method is Config.TokenMethod and its
// data is a known token. An AUTH request (re-authentication) passes on a
// known token. The answer carries the user's attributes and, when the
// user's Lifetime is set, an expiry that far in the future.
//
//	h := authserver.NewHandler(authserver.Config{
//		Users: map[string]authserver.User{
//			"thermostat": {Password: "s3cret", Attributes: map[string]string{"group": "sensors"}},
//		},
//	})
//	srv, err := authserver.Start("127.0.0.1:0", tlsConfig, h)
package authserver
