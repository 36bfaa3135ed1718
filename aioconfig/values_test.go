package aioconfig_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/aioconfig"
)

// A Config changed in Go gets the checks a file gets: a duration that does
// not parse is refused by Validate (and so by Build) with its field, never
// read as zero (the default). Before Validate checked values, these
// configurations validated and built with the defaults.
func TestValidateValuesOfAConfigBuiltInGo(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(c *aioconfig.Config)
		field string
	}{
		{"limits.connectTimeout", func(c *aioconfig.Config) {
			c.Settings.Limits = &aioconfig.Limits{ConnectTimeout: "10 s"}
		}, "spec.limits.connectTimeout"},
		{"session.exchangeTimeout", func(c *aioconfig.Config) {
			c.Settings.Session.ExchangeTimeout = "soon"
		}, "spec.session.exchangeTimeout"},
		{"session.onExpiry", func(c *aioconfig.Config) {
			c.Settings.Session.OnExpiry = "drop"
		}, "spec.session.onExpiry"},
		{"throttle.address.every", func(c *aioconfig.Config) {
			c.Settings.Throttle = &aioconfig.Throttle{Address: &aioconfig.ThrottleLimit{Every: "6"}}
		}, "spec.throttle.address.every"},
		{"serviceAccountTokenSettings.cacheTTL", func(c *aioconfig.Config) {
			c.Authentications[0].Methods = append(c.Authentications[0].Methods, aioconfig.Method{
				Method: aioconfig.MethodSAT, SAT: &aioconfig.SATSettings{Audiences: []string{"aio-mq"}, CacheTTL: "5 minutes"}})
		}, ".cacheTTL"},
		{"jwtSettings.requestTimeout", func(c *aioconfig.Config) {
			c.Authentications[0].Methods = append(c.Authentications[0].Methods, aioconfig.Method{
				Method: aioconfig.MethodJWT, JWT: &aioconfig.JWTSettings{Issuer: "https://issuer.example", Audiences: []string{"mqtt"}, RequestTimeout: "1O s"}})
		}, ".requestTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := aioconfig.Parse([]byte(limitsListener), "base.yaml", t.TempDir())
			require.NoError(t, err)
			require.NoError(t, c.Validate())
			tc.edit(c)
			err = c.Validate()
			require.Error(t, err)
			require.ErrorIs(t, err, aioconfig.ErrInvalidValue)
			var cerr *aioconfig.Error
			require.True(t, errors.As(err, &cerr), "%v", err)
			require.Contains(t, err.Error(), tc.field)
			_, err = aioconfig.Build(context.Background(), c, aioconfig.Options{})
			require.ErrorIs(t, err, aioconfig.ErrInvalidValue)
		})
	}
}
