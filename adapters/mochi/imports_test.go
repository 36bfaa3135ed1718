package mochi_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestImportsOnlyAuth: the adapter decides through auth.Session and the
// Authorizer of auth.Config, and carries connections through the
// connection layer, so of this module's packages it imports auth and
// mqttconn alone (not abac, not x509auth): no second authorizer can differ
// from the Manager's, and no connection rule is written twice.
func TestImportsOnlyAuth(t *testing.T) {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		require.NoError(t, err)
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			require.NoError(t, err)
			if strings.HasPrefix(path, "github.com/mqttauth/mqttauth/") {
				require.Contains(t, []string{"github.com/mqttauth/mqttauth/auth", "github.com/mqttauth/mqttauth/mqttconn"},
					path, "%s imports %s", name, path)
			}
		}
	}
}
