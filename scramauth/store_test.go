package scramauth_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/xdg-go/scram"

	"github.com/mqttauth/mqttauth/scramauth"
)

func TestNewCredential(t *testing.T) {
	t.Run("matches_the_library_client", func(t *testing.T) {
		for _, mech := range scramauth.Mechanisms {
			c, err := scramauth.NewCredential(mech, "pencil", 0)
			require.NoError(t, err)
			require.Equal(t, scramauth.DefaultIterations, c.Iterations)
			require.Len(t, c.Salt, scramauth.SaltLength)
			require.NoError(t, c.Validate(mech))
			client, err := hashOf(mech).NewClient("", "pencil", "")
			require.NoError(t, err)
			want, err := client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(c.Salt), Iters: c.Iterations})
			require.NoError(t, err)
			require.Equal(t, want.StoredKey, c.StoredKey)
			require.Equal(t, want.ServerKey, c.ServerKey)
		}
	})
	t.Run("fresh_salt_each_time", func(t *testing.T) {
		a, err := scramauth.NewCredential(scramauth.SHA256, "pencil", 4096)
		require.NoError(t, err)
		b, err := scramauth.NewCredential(scramauth.SHA256, "pencil", 4096)
		require.NoError(t, err)
		require.NotEqual(t, a.Salt, b.Salt)
		require.NotEqual(t, a.StoredKey, b.StoredKey)
	})
	t.Run("sasl_prepped_password", func(t *testing.T) {
		// U+00A0 (no-break space) maps to a space under SASLprep: the
		// client sends the same proof for either form.
		c, err := scramauth.NewCredential(scramauth.SHA256, "a\u00a0b", 4096)
		require.NoError(t, err)
		u, err := scramauth.NewUsers(&scramauth.File{Users: []scramauth.User{{Name: "dave", Credentials: map[scramauth.Mechanism]scramauth.Credential{scramauth.SHA256: c}}}})
		require.NoError(t, err)
		r := newRig(t, newAuthenticator(t, scramauth.Config{Store: u}))
		fullConnect(t, r, scramauth.SHA256, "dave", "a b")
	})
	for _, tc := range []struct {
		name  string
		mech  scramauth.Mechanism
		pw    string
		iters int
	}{
		{"few_iterations", scramauth.SHA256, "pw", 4095},
		{"unknown_mechanism", "SCRAM-SHA-1", "pw", 4096},
		{"empty_password", scramauth.SHA256, "", 4096},
		{"password_sasl_prep_rejects", scramauth.SHA256, "bad\u0007pw", 4096},
	} {
		t.Run("rejects_"+tc.name, func(t *testing.T) {
			_, err := scramauth.NewCredential(tc.mech, tc.pw, tc.iters)
			require.ErrorIs(t, err, scramauth.ErrInvalidCredential)
			if tc.pw != "" {
				require.NotContains(t, err.Error(), tc.pw, "the error never quotes the password")
			}
		})
	}
}

func credJSON(t *testing.T, mech scramauth.Mechanism) string {
	t.Helper()
	c, err := scramauth.NewCredential(mech, "pencil", 4096)
	require.NoError(t, err)
	b, err := json.Marshal(c)
	require.NoError(t, err)
	return string(b)
}

func TestParseFile(t *testing.T) {
	good := credJSON(t, scramauth.SHA256)
	t.Run("json_and_yaml", func(t *testing.T) {
		var c scramauth.Credential
		require.NoError(t, json.Unmarshal([]byte(good), &c))
		js := `{"users":[{"name":"alice","credentials":{"SCRAM-SHA-256":` + good + `},"attributes":{"group":"a"}}]}`
		u, err := scramauth.ParseUsers([]byte(js))
		require.NoError(t, err)
		got, ok := u.Lookup(scramauth.SHA256, "alice")
		require.True(t, ok)
		require.Equal(t, c.StoredKey, got.StoredKey)
		require.Equal(t, map[string]string{"group": "a"}, got.Attributes)
		_, ok = u.Lookup(scramauth.SHA512, "alice")
		require.False(t, ok)
		_, ok = u.Lookup(scramauth.SHA256, "Alice")
		require.False(t, ok, "names are exact")

		yml := "users:\n- name: alice\n  credentials:\n    SCRAM-SHA-256:\n" +
			"      salt: " + base64.StdEncoding.EncodeToString(c.Salt) + "\n" +
			"      iterations: 4096\n" +
			"      storedKey: " + base64.StdEncoding.EncodeToString(c.StoredKey) + "\n" +
			"      serverKey: " + base64.StdEncoding.EncodeToString(c.ServerKey) + "\n"
		u, err = scramauth.ParseUsers([]byte(yml))
		require.NoError(t, err)
		got, ok = u.Lookup(scramauth.SHA256, "alice")
		require.True(t, ok)
		require.Equal(t, c.ServerKey, got.ServerKey)
		require.Equal(t, 1, u.Len())
	})
	t.Run("explicit_empty_set", func(t *testing.T) {
		u, err := scramauth.ParseUsers([]byte(`{"users": []}`))
		require.NoError(t, err)
		require.Zero(t, u.Len())
	})
	few := strings.Replace(good, `"iterations":4096`, `"iterations":1000`, 1)
	shortKey := strings.Replace(good, `"storedKey":"`, `"storedKey":"AAAA`, 1)
	for _, tc := range []struct{ name, doc string }{
		{"empty_file", "  \n"},
		{"no_users_key", `{}`},
		{"unknown_field", `{"users":[{"name":"alice","password":"x","credentials":{"SCRAM-SHA-256":` + good + `}}]}`},
		{"syntax", `{"users":[`},
		{"few_iterations", `{"users":[{"name":"alice","credentials":{"SCRAM-SHA-256":` + few + `}}]}`},
		{"wrong_key_size", `{"users":[{"name":"alice","credentials":{"SCRAM-SHA-256":` + shortKey + `}}]}`},
		{"sha256_keys_as_sha512", `{"users":[{"name":"alice","credentials":{"SCRAM-SHA-512":` + good + `}}]}`},
		{"unknown_mechanism", `{"users":[{"name":"alice","credentials":{"SCRAM-SHA-1":` + good + `}}]}`},
		{"no_credentials", `{"users":[{"name":"alice","credentials":{}}]}`},
		{"empty_name", `{"users":[{"name":"","credentials":{"SCRAM-SHA-256":` + good + `}}]}`},
		{"duplicate", `{"users":[{"name":"a","credentials":{"SCRAM-SHA-256":` + good + `}},{"name":"a","credentials":{"SCRAM-SHA-256":` + good + `}}]}`},
		{"name_sasl_prep_changes", `{"users":[{"name":"a\u00a0b","credentials":{"SCRAM-SHA-256":` + good + `}}]}`},
		{"empty_attribute_name", `{"users":[{"name":"a","credentials":{"SCRAM-SHA-256":` + good + `},"attributes":{"":"x"}}]}`},
		{"bad_base64", `{"users":[{"name":"a","credentials":{"SCRAM-SHA-256":{"salt":"!!","iterations":4096,"storedKey":"","serverKey":""}}}]}`},
	} {
		t.Run("rejects_"+tc.name, func(t *testing.T) {
			_, err := scramauth.ParseUsers([]byte(tc.doc))
			require.ErrorIs(t, err, scramauth.ErrInvalidCredential)
		})
	}
	t.Run("put_remove_marshal_round_trip", func(t *testing.T) {
		f := &scramauth.File{}
		f.Put(testUsers().Users[1])
		f.Put(testUsers().Users[0])
		rotated := testUsers().Users[0]
		rotated.Attributes = map[string]string{"group": "new"}
		f.Put(rotated)
		require.Len(t, f.Users, 2)
		data, err := f.Marshal()
		require.NoError(t, err)
		back, err := scramauth.ParseFile(data)
		require.NoError(t, err)
		require.Equal(t, []string{"alice", "bob"}, []string{back.Users[0].Name, back.Users[1].Name}, "sorted by name")
		require.Equal(t, "new", back.Users[0].Attributes["group"])
		require.True(t, back.Remove("alice"))
		require.False(t, back.Remove("alice"))
		require.Len(t, back.Users, 1)
		require.NotContains(t, string(data), "pencil")
	})
}

func writeUsers(t *testing.T, path string, f *scramauth.File) {
	t.Helper()
	data, err := f.Marshal()
	require.NoError(t, err)
	writeRaw(t, path, data)
}

func writeRaw(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, data, 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

const waitFor = 5 * time.Second

func newFileStore(t *testing.T, path string) (*scramauth.FileStore, chan *scramauth.Users, chan error, *lockedWriter) {
	t.Helper()
	changed, failed := make(chan *scramauth.Users, 10), make(chan error, 10)
	logs := &lockedWriter{w: new(bytes.Buffer)}
	s, err := scramauth.NewFileStore(scramauth.FileStoreConfig{
		Path:     path,
		Debounce: 20 * time.Millisecond,
		Logger:   slogTo(logs),
		OnChange: func(u *scramauth.Users) { changed <- u },
		OnError:  func(err error) { failed <- err },
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s, changed, failed, logs
}

func TestFileStore(t *testing.T) {
	all := testUsers()
	onlyAlice := &scramauth.File{Users: all.Users[:1]}
	t.Run("reload_on_change_keeps_last_good_on_error", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "users.json")
		writeUsers(t, path, all)
		s, changed, failed, logs := newFileStore(t, path)
		require.Equal(t, uint64(1), s.Generation())
		_, ok := s.Lookup(scramauth.SHA256, "bob")
		require.True(t, ok)

		writeUsers(t, path, onlyAlice)
		select {
		case u := <-changed:
			require.Equal(t, 1, u.Len())
		case <-time.After(waitFor):
			t.Fatal("no reload")
		}
		require.Equal(t, uint64(2), s.Generation())
		_, ok = s.Lookup(scramauth.SHA256, "bob")
		require.False(t, ok)
		require.NoError(t, s.Err())

		// A bad write: the last good users stay, the error is reported.
		writeRaw(t, path, []byte(`{"users":[{"name":"x","credentials":{"SCRAM-SHA-256":{"salt":"AAAAAAAAAAA=","iterations":1,"storedKey":"","serverKey":""}}}]}`))
		select {
		case err := <-failed:
			require.ErrorIs(t, err, scramauth.ErrInvalidCredential)
		case <-time.After(waitFor):
			t.Fatal("no error reported")
		}
		require.ErrorIs(t, s.Err(), scramauth.ErrInvalidCredential)
		_, ok = s.Lookup(scramauth.SHA256, "alice")
		require.True(t, ok, "the last good users stay in force")
		require.Equal(t, uint64(2), s.Generation())
		require.Contains(t, logs.String(), "scram users file rejected")

		// A truncated write is a bad write too, not an empty user set.
		writeRaw(t, path, nil)
		select {
		case <-failed:
		case <-time.After(waitFor):
			t.Fatal("no error reported")
		}
		_, ok = s.Lookup(scramauth.SHA256, "alice")
		require.True(t, ok)

		writeUsers(t, path, all)
		select {
		case <-changed:
		case <-time.After(waitFor):
			t.Fatal("no reload")
		}
		require.NoError(t, s.Err())
		_, ok = s.Lookup(scramauth.SHA256, "bob")
		require.True(t, ok)
		require.NotContains(t, logs.String(), "storedKey")
	})
	t.Run("kubernetes_data_symlink_swap", func(t *testing.T) {
		// The layout of a mounted Secret: users.json -> ..data/users.json,
		// ..data -> ..2026_01_01_v1; an update swaps ..data atomically.
		dir := t.TempDir()
		v1, v2 := filepath.Join(dir, "..v1"), filepath.Join(dir, "..v2")
		require.NoError(t, os.Mkdir(v1, 0o700))
		require.NoError(t, os.Mkdir(v2, 0o700))
		writeUsers(t, filepath.Join(v1, "users.json"), all)
		writeUsers(t, filepath.Join(v2, "users.json"), onlyAlice)
		require.NoError(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
		require.NoError(t, os.Symlink(filepath.Join("..data", "users.json"), filepath.Join(dir, "users.json")))

		s, changed, _, _ := newFileStore(t, filepath.Join(dir, "users.json"))
		_, ok := s.Lookup(scramauth.SHA256, "bob")
		require.True(t, ok)

		require.NoError(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
		require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
		select {
		case <-changed:
		case <-time.After(waitFor):
			t.Fatal("the ..data swap was not seen")
		}
		_, ok = s.Lookup(scramauth.SHA256, "bob")
		require.False(t, ok)
	})
	t.Run("unchanged_content_is_not_a_reload", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "users.json")
		writeUsers(t, path, all)
		s, _, _, _ := newFileStore(t, path)
		require.NoError(t, s.Reload())
		require.Equal(t, uint64(1), s.Generation())
	})
	t.Run("first_load_must_succeed", func(t *testing.T) {
		dir := t.TempDir()
		_, err := scramauth.NewFileStore(scramauth.FileStoreConfig{Path: filepath.Join(dir, "missing.json")})
		require.Error(t, err)
		bad := filepath.Join(dir, "bad.json")
		writeRaw(t, bad, []byte("{}"))
		_, err = scramauth.NewFileStore(scramauth.FileStoreConfig{Path: bad})
		require.ErrorIs(t, err, scramauth.ErrInvalidCredential)
		_, err = scramauth.NewFileStore(scramauth.FileStoreConfig{})
		require.Error(t, err)
	})
	t.Run("serves_sessions_across_a_reload", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "users.json")
		writeUsers(t, path, all)
		s, changed, _, _ := newFileStore(t, path)
		a := newAuthenticator(t, scramauth.Config{Store: s})
		fullConnect(t, newRig(t, a), scramauth.SHA256, "bob", "hunter2")
		writeUsers(t, path, onlyAlice)
		<-changed
		r := newRig(t, a)
		conv := newConv(t, scramauth.SHA256, "bob", "hunter2")
		s1 := requireChallenge(t, r.connect(scramauth.SHA256, step(t, conv, "")), scramauth.SHA256)
		resp := r.auth(0x18, scramauth.SHA256, step(t, conv, s1))
		require.ErrorIs(t, resp.Err, scramauth.ErrUnknownUser)
	})
}

func TestMemoryStore(t *testing.T) {
	s := scramauth.NewMemoryStore(nil)
	_, ok := s.Lookup(scramauth.SHA256, "alice")
	require.False(t, ok, "an empty store holds no user")
	fired := 0
	cancel := s.Notify(func() { fired++ })
	f := &scramauth.File{}
	cred, err := scramauth.NewCredential(scramauth.SHA256, "pw", 4096)
	require.NoError(t, err)
	f.Put(scramauth.User{Name: "alice", Credentials: map[scramauth.Mechanism]scramauth.Credential{scramauth.SHA256: cred}})
	u, err := scramauth.NewUsers(f)
	require.NoError(t, err)
	s.Replace(u)
	require.Equal(t, 1, fired, "Replace signals the change")
	_, ok = s.Lookup(scramauth.SHA256, "alice")
	require.True(t, ok)
	require.Equal(t, 1, s.Current().Len())
	cancel()
	s.Replace(nil)
	require.Equal(t, 1, fired, "no call after cancel")
	_, ok = s.Lookup(scramauth.SHA256, "alice")
	require.False(t, ok)
}
