package aioconfig_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/mqttauth/mqttauth/aioconfig"
)

// FuzzParse: any text is loaded or refused with an *Error; never a panic.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/seed00*/*")
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(credsDoc))
	f.Add([]byte(satDoc(", cacheTTL: 2m, attributeTTL: 30s, watch: false")))
	f.Add([]byte(settingsDoc + "{admin: {address: '127.0.0.1:9191', pprof: true, audit: {level: debug, denyLevel: warn, sampleAllows: 10}}}"))
	f.Add([]byte("---\n---\nkind: BrokerListener\nspec: {ports: [{port: 1, tls: {mode: Manual, manual: {}}}]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := aioconfig.Parse(data, "fuzz.yaml", t.TempDir())
		if err != nil {
			var e *aioconfig.Error
			if !errors.As(err, &e) {
				t.Fatalf("not an *Error: %v", err)
			}
			return
		}
		_ = c.Validate()
	})
}
