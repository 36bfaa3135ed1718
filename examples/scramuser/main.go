// Command scramuser adds, rotates and removes the users of a scramauth users
// file. The file holds, per user and mechanism, a salt, an iteration count
// and the derived StoredKey and ServerKey: never a password.
//
//	scramuser add NAME [-file users.json] [-mech SCRAM-SHA-256,SCRAM-SHA-512] [-iterations 4096] [-attr k=v ...]
//	scramuser remove NAME [-file users.json]
//
// add reads the password from standard input: one line, without echo when
// standard input is a terminal. It is never an argument, so it never shows in
// a process list or a shell history:
//
//	scramuser add alice -attr group=thermostats < alice.password
//
// Adding an existing user rotates it: its credentials are replaced by those
// of the new password for the mechanisms given (a mechanism not given is
// removed, so the old password works nowhere), and its attributes are
// replaced when -attr is given, kept otherwise.
//
// The file is rewritten atomically (a temporary file in the same directory,
// synced, then renamed over the old one), so a scramauth.FileStore watching
// it never reads half a file. It is always written with mode 0600: the
// derived keys are secrets (a ServerKey lets its holder pose as the
// server, a StoredKey is a target for guessing), so an existing file that
// others could read is tightened.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/term"

	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/scramauth"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage:
  scramuser add NAME [-file users.json] [-mech SCRAM-SHA-256,SCRAM-SHA-512] [-iterations 4096] [-attr k=v ...]
  scramuser remove NAME [-file users.json]
The password is read from standard input, one line.
`

// errUsage marks a command line error: exit status 2.
var errUsage = errors.New("usage")

// run is the command; it returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := dispatch(args, stdin, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "scramuser: %v\n%s", err, usage)
		return 2
	default:
		fmt.Fprintf(stderr, "scramuser: %v\n", err)
		return 1
	}
}

func dispatch(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command", errUsage)
	}
	fs := flag.NewFlagSet("scramuser "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "users.json", "the users file (JSON, or YAML to read)")
	var (
		mechs string
		iters int
		attrs attrFlag
	)
	switch args[0] {
	case "add":
		fs.StringVar(&mechs, "mech", string(scramauth.SHA256)+","+string(scramauth.SHA512), "comma-separated mechanisms")
		fs.IntVar(&iters, "iterations", scramauth.DefaultIterations, "PBKDF2 iterations (at least 4096)")
		fs.Var(&attrs, "attr", "an attribute k=v for authorization; repeat for more")
	case "remove":
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	// Flags may come before or after NAME.
	var names []string
	for rest := args[1:]; ; {
		if err := fs.Parse(rest); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		if fs.NArg() == 0 {
			break
		}
		names = append(names, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(names) != 1 {
		return fmt.Errorf("%w: want one user name, got %d", errUsage, len(names))
	}
	name := names[0]

	f, err := load(*file)
	if err != nil {
		return err
	}
	switch args[0] {
	case "add":
		ms, err := parseMechs(mechs)
		if err != nil {
			return err
		}
		password, err := readPassword(stdin, stderr)
		if err != nil {
			return err
		}
		u := scramauth.User{Name: name, Credentials: make(map[scramauth.Mechanism]scramauth.Credential, len(ms))}
		for _, m := range ms {
			c, err := scramauth.NewCredential(m, password, iters)
			if err != nil {
				return err
			}
			u.Credentials[m] = c
		}
		verb := "added"
		if i := slices.IndexFunc(f.Users, func(x scramauth.User) bool { return x.Name == name }); i >= 0 {
			verb = "rotated"
			u.Attributes = f.Users[i].Attributes
		}
		if attrs != nil {
			u.Attributes = attrs
		}
		f.Put(u)
		if err := save(*file, f); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s %s (%s, %d iterations) in %s\n", verb, name, joinMechs(ms), iters, *file)
	case "remove":
		if !f.Remove(name) {
			return fmt.Errorf("no user %q in %s", name, *file)
		}
		if err := save(*file, f); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed %s from %s\n", name, *file)
	}
	return nil
}

// attrFlag collects -attr k=v.
type attrFlag map[string]string

func (a *attrFlag) String() string { return fmt.Sprint(map[string]string(*a)) }

func (a *attrFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("attribute %q is not k=v", s)
	}
	if *a == nil {
		*a = make(map[string]string)
	}
	(*a)[k] = v
	return nil
}

func parseMechs(s string) ([]scramauth.Mechanism, error) {
	var ms []scramauth.Mechanism
	for p := range strings.SplitSeq(s, ",") {
		m := scramauth.Mechanism(strings.TrimSpace(p))
		if !m.Valid() {
			return nil, fmt.Errorf("%w: unknown mechanism %q (want %s)", errUsage, m, joinMechs(scramauth.Mechanisms))
		}
		if !slices.Contains(ms, m) {
			ms = append(ms, m)
		}
	}
	return ms, nil
}

func joinMechs(ms []scramauth.Mechanism) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = string(m)
	}
	return strings.Join(s, ",")
}

// readPassword reads one line. On a terminal it turns echo off.
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return checkPassword(string(b))
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", errors.New("read password: standard input has no line")
	}
	return checkPassword(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"))
}

func checkPassword(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty password")
	}
	return p, nil
}

// load reads the users file; a missing file is an empty one.
func load(path string) (*scramauth.File, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &scramauth.File{}, nil
	}
	if err != nil {
		return nil, err
	}
	f, err := scramauth.ParseFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// save validates f and writes it atomically with mode 0600 (the derived
// keys are secrets: an existing file with looser permissions is
// tightened): a temporary file in the same directory, synced, renamed over
// path, and the directory synced.
func save(path string, f *scramauth.File) error {
	if err := f.Validate(); err != nil {
		return err
	}
	data, err := f.Marshal()
	if err != nil {
		return err
	}
	return devpki.WriteSecretFile(path, data)
}
