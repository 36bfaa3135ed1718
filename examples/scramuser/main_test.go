package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/xdg-go/scram"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/scramauth"
)

type result struct {
	code           int
	stdout, stderr string
}

func runCmd(stdin string, args ...string) result {
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

// login runs a full SCRAM exchange against the file's users and reports
// whether it passed (and the principal).
func login(t *testing.T, path string, mech scramauth.Mechanism, user, pass string) (*auth.Principal, bool) {
	t.Helper()
	users, err := scramauth.ParseUsers(mustRead(t, path))
	require.NoError(t, err)
	a, err := scramauth.New(scramauth.Config{Store: users})
	require.NoError(t, err)
	h := scram.SHA256
	if mech == scramauth.SHA512 {
		h = scram.SHA512
	}
	client, err := h.NewClient(user, pass, "")
	require.NoError(t, err)
	conv := client.NewConversation()
	c1, err := conv.Step("")
	require.NoError(t, err)
	ctx := context.Background()
	r := a.Authenticate(ctx, &auth.Request{AuthMethod: string(mech), AuthData: []byte(c1)})
	require.Equal(t, auth.Continue, r.Outcome, "%v", r.Err)
	c2, err := conv.Step(string(r.Data))
	require.NoError(t, err)
	r = a.Authenticate(ctx, &auth.Request{AuthMethod: string(mech), Step: 1, State: r.State, AuthData: []byte(c2)})
	if r.Outcome != auth.Pass {
		return nil, false
	}
	_, err = conv.Step(string(r.Data))
	require.NoError(t, err)
	require.True(t, conv.Valid())
	return r.Principal, true
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func TestScramuser(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.json")

	t.Run("add_creates_the_file", func(t *testing.T) {
		r := runCmd("pencil\n", "add", "alice", "-file", path, "-attr", "group=thermostats", "-attr", "floor=2")
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "added alice (SCRAM-SHA-256,SCRAM-SHA-512, 4096 iterations)")
		data := mustRead(t, path)
		require.NotContains(t, string(data), "pencil", "no password in the file")
		require.NotContains(t, r.stdout+r.stderr, "pencil", "the password is never echoed")
		st, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
		for _, m := range scramauth.Mechanisms {
			p, ok := login(t, path, m, "alice", "pencil")
			require.True(t, ok, m)
			g, _ := p.Attribute("group")
			require.Equal(t, "thermostats", g)
		}
		_, ok := login(t, path, scramauth.SHA256, "alice", "wrong")
		require.False(t, ok)
	})
	t.Run("flags_before_the_name_and_crlf", func(t *testing.T) {
		r := runCmd("hunter2\r\n", "add", "-file", path, "-mech", "SCRAM-SHA-512", "-iterations", "8192", "bob")
		require.Equal(t, 0, r.code, r.stderr)
		_, ok := login(t, path, scramauth.SHA512, "bob", "hunter2")
		require.True(t, ok)
		users, err := scramauth.ParseUsers(mustRead(t, path))
		require.NoError(t, err)
		c, ok := users.Lookup(scramauth.SHA512, "bob")
		require.True(t, ok)
		require.Equal(t, 8192, c.Iterations)
		_, ok = users.Lookup(scramauth.SHA256, "bob")
		require.False(t, ok)
	})
	t.Run("password_without_newline", func(t *testing.T) {
		r := runCmd("s3cret", "add", "carol", "-file", path, "-mech", "SCRAM-SHA-256")
		require.Equal(t, 0, r.code, r.stderr)
		_, ok := login(t, path, scramauth.SHA256, "carol", "s3cret")
		require.True(t, ok)
	})
	t.Run("rotate_replaces_every_credential_keeps_attributes", func(t *testing.T) {
		r := runCmd("new-pencil\n", "add", "alice", "-file", path, "-mech", "SCRAM-SHA-256")
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "rotated alice")
		p, ok := login(t, path, scramauth.SHA256, "alice", "new-pencil")
		require.True(t, ok)
		g, _ := p.Attribute("group")
		require.Equal(t, "thermostats", g, "attributes kept without -attr")
		_, ok = login(t, path, scramauth.SHA256, "alice", "pencil")
		require.False(t, ok, "the old password no longer works")
		users, err := scramauth.ParseUsers(mustRead(t, path))
		require.NoError(t, err)
		_, ok = users.Lookup(scramauth.SHA512, "alice")
		require.False(t, ok, "the old SCRAM-SHA-512 credential is gone with the old password")
		_, ok = users.Lookup(scramauth.SHA256, "bob")
		require.False(t, ok)
		_, ok = users.Lookup(scramauth.SHA512, "bob")
		require.True(t, ok, "other users untouched")

		r = runCmd("new-pencil\n", "add", "alice", "-file", path, "-attr", "group=boilers")
		require.Equal(t, 0, r.code, r.stderr)
		p, ok = login(t, path, scramauth.SHA512, "alice", "new-pencil")
		require.True(t, ok)
		g, _ = p.Attribute("group")
		require.Equal(t, "boilers", g)
		_, ok = p.Attribute("floor")
		require.False(t, ok, "-attr replaces the attributes")
	})
	t.Run("remove", func(t *testing.T) {
		r := runCmd("", "remove", "bob", "-file", path)
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, "removed bob")
		users, err := scramauth.ParseUsers(mustRead(t, path))
		require.NoError(t, err)
		_, ok := users.Lookup(scramauth.SHA512, "bob")
		require.False(t, ok)
		require.Equal(t, 2, users.Len())

		r = runCmd("", "remove", "bob", "-file", path)
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, `no user "bob"`)
	})
	t.Run("no_temporary_files_left", func(t *testing.T) {
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, entries, 1)
	})

	before := mustRead(t, path)
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		msg   string
	}{
		{"no_command", "", nil, 2, "no command"},
		{"unknown_command", "", []string{"list"}, 2, "unknown command"},
		{"no_name", "pw\n", []string{"add", "-file", path}, 2, "want one user name"},
		{"two_names", "pw\n", []string{"add", "a", "b", "-file", path}, 2, "want one user name"},
		{"unknown_flag", "pw\n", []string{"add", "a", "-password", "pw", "-file", path}, 2, "-password"},
		{"unknown_mechanism", "pw\n", []string{"add", "a", "-mech", "SCRAM-SHA-1", "-file", path}, 2, "unknown mechanism"},
		{"bad_attr", "pw\n", []string{"add", "a", "-attr", "novalue", "-file", path}, 2, "not k=v"},
		{"few_iterations", "pw\n", []string{"add", "a", "-iterations", "1000", "-file", path}, 1, "fewer than 4096"},
		{"empty_password", "\n", []string{"add", "a", "-file", path}, 1, "empty password"},
		{"no_stdin", "", []string{"add", "a", "-file", path}, 1, "no line"},
		{"name_sasl_prep_changes", "pw\n", []string{"add", "a\u00a0b", "-file", path}, 1, "SASLprep"},
		{"broken_file", "pw\n", []string{"add", "a", "-file", filepath.Join(dir, "..", "broken.json")}, 1, "users file"},
	} {
		t.Run("refuses_"+tc.name, func(t *testing.T) {
			if tc.name == "broken_file" {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "..", "broken.json"), []byte("{"), 0o600))
			}
			r := runCmd(tc.stdin, tc.args...)
			require.Equal(t, tc.code, r.code, r.stderr)
			require.Contains(t, r.stderr, tc.msg)
			require.NotContains(t, r.stderr, "pw\n")
			require.Equal(t, before, mustRead(t, path), "the file is unchanged")
		})
	}
}

// TestUsersFileTightenedTo0600: the users file holds derived keys; one
// that exists with mode 0644 (made by hand, copied from elsewhere) is
// 0600 after scramuser writes it, for add and for remove.
func TestUsersFileTightenedTo0600(t *testing.T) {
	for _, tc := range []struct {
		name, stdin string
		args        []string
	}{
		{"add", "pencil\n", []string{"add", "dave"}},
		{"remove", "", []string{"remove", "erin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users.json")
			r := runCmd("secret\n", "add", "erin", "-file", path)
			require.Equal(t, 0, r.code, r.stderr)
			require.NoError(t, os.Chmod(path, 0o644))
			r = runCmd(tc.stdin, append(tc.args, "-file", path)...)
			require.Equal(t, 0, r.code, r.stderr)
			st, err := os.Stat(path)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
		})
	}
}
