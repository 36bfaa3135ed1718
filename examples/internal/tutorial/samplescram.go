package tutorial

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/scramauth"
)

// EnsureSampleSCRAMUser writes, unless they exist, the SCRAM users file of
// the tutorial configuration in dir, holding the sample user's derived keys
// for SCRAM-SHA-256 and SCRAM-SHA-512, and the user's random password in a
// separate file (mode 0600) for the clients to read. It returns the
// password file's path.
func EnsureSampleSCRAMUser(dir string) (string, error) {
	users := filepath.Join(dir, SampleSCRAMUsersFile)
	pwFile := filepath.Join(dir, SampleSCRAMPasswordFile)
	if _, err := os.Stat(users); err == nil {
		return pwFile, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 18)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	password := base64.RawURLEncoding.EncodeToString(raw)
	u := scramauth.User{Name: SampleSCRAMUser, Credentials: map[scramauth.Mechanism]scramauth.Credential{}}
	for _, m := range scramauth.Mechanisms {
		c, err := scramauth.NewCredential(m, password, scramauth.MinIterations)
		if err != nil {
			return "", err
		}
		u.Credentials[m] = c
	}
	var f scramauth.File
	f.Put(u)
	data, err := f.Marshal()
	if err != nil {
		return "", err
	}
	if err := devpki.WriteSecretFile(pwFile, []byte(password+"\n")); err != nil {
		return "", err
	}
	return pwFile, devpki.WriteSecretFile(users, data)
}

// SampleSCRAMUser is the user name of the SCRAM sample user, whose random
// password the example broker writes to SampleSCRAMPasswordFile.
const (
	SampleSCRAMUser         = "sample"
	SampleSCRAMUsersFile    = "scram-users.json"
	SampleSCRAMPasswordFile = "scram-sample.password"
)
