package jwtauth_test

import (
	"context"
	"log"
	"time"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/jwtauth"
)

// An authenticator for an OpenID Connect issuer: clients send a JWT in the
// Authentication Data of a CONNECT naming "OAUTH2-JWT"; the token's email
// claim is the user name, its site and tier claims are attributes for the
// policy. It needs the issuer on the network, so it has no output.
func ExampleNew() {
	a, err := jwtauth.New(jwtauth.Config{
		Issuer:             "https://login.example.com/tenant",
		Audiences:          []string{"mqtt://broker.example.com"},
		Method:             "OAUTH2-JWT",
		UsernameClaim:      "email",
		ClaimsToAttributes: map[string]string{"site": "site", "tier": "tier"},
		Leeway:             30 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	// Fail early on a wrong URL; Authenticate would fetch on first use.
	if err := a.Refresh(context.Background()); err != nil {
		log.Print(err)
	}
	m, err := auth.NewManager(auth.Config{Authenticator: auth.Chain{a}, Authorizer: auth.AllowAuthenticated})
	if err != nil {
		log.Fatal(err)
	}
	_ = m // attach to a broker adapter, e.g. adapters/mochi
}

// A 3.1.1 client puts the token in the password, with the user name "$jwt".
func ExampleNew_password() {
	a, err := jwtauth.New(jwtauth.Config{
		Issuer:           "https://login.example.com/tenant",
		Audiences:        []string{"mqtt://broker.example.com"},
		TokenFrom:        jwtauth.FromPassword,
		PasswordUsername: "$jwt",
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = a
}
