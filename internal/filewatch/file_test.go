package filewatch_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqttauth/mqttauth/internal/filewatch"
)

type numbered struct {
	n   int
	gen uint64
}

func TestFileValue(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "value.txt")
	write := func(s string) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("1")
	var (
		mu      sync.Mutex
		parses  int
		changes []numbered
		errs    []error
	)
	f, err := filewatch.NewFile(filewatch.FileConfig[numbered]{
		Path:     path,
		Debounce: 20 * time.Millisecond,
		Parse: func(data []byte, gen uint64) (numbered, error) {
			mu.Lock()
			parses++
			mu.Unlock()
			n, err := strconv.Atoi(strings.TrimSpace(string(data)))
			if err != nil {
				return numbered{}, errors.New("test: not a number")
			}
			return numbered{n: n, gen: gen}, nil
		},
		Prefix:   "test",
		What:     "test value",
		Describe: func(v numbered) slog.Attr { return slog.Int("n", v.n) },
		Logger:   slog.New(slog.DiscardHandler),
		OnChange: func(v numbered) { mu.Lock(); changes = append(changes, v); mu.Unlock() },
		OnError:  func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Current(); got != (numbered{1, 1}) || f.Generation() != 1 || f.Err() != nil {
		t.Fatalf("first load: %+v gen %d err %v", got, f.Generation(), f.Err())
	}

	eventually := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	write("2")
	eventually("the change", func() bool { return f.Current() == numbered{2, 2} })

	write("garbage")
	eventually("the rejection", func() bool { return f.Err() != nil })
	if f.Current() != (numbered{2, 2}) || f.Generation() != 2 {
		t.Fatalf("a bad write replaced the value: %+v gen %d", f.Current(), f.Generation())
	}

	write("3")
	eventually("the recovery", func() bool { return f.Current() == numbered{3, 3} })
	if f.Err() != nil {
		t.Fatalf("Err after a good write: %v", f.Err())
	}

	mu.Lock()
	before := parses
	mu.Unlock()
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if parses != before {
		t.Fatalf("unchanged content was parsed again")
	}
	if len(changes) != 2 || changes[0] != (numbered{2, 2}) || changes[1] != (numbered{3, 3}) {
		t.Fatalf("OnChange got %+v", changes)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "not a number") {
		t.Fatalf("OnError got %v", errs)
	}
}

func TestFileValueErrors(t *testing.T) {
	parse := func([]byte, uint64) (int, error) { return 0, nil }
	if _, err := filewatch.NewFile(filewatch.FileConfig[int]{Parse: parse}); err == nil {
		t.Fatal("no path accepted")
	}
	if _, err := filewatch.NewFile(filewatch.FileConfig[int]{Path: filepath.Join(t.TempDir(), "missing"), Parse: parse, Prefix: "test"}); err == nil || !strings.HasPrefix(err.Error(), "test: ") {
		t.Fatalf("missing file: %v", err)
	}
	p := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := func([]byte, uint64) (int, error) { return 0, errors.New("test: bad") }
	if _, err := filewatch.NewFile(filewatch.FileConfig[int]{Path: p, Parse: bad}); err == nil {
		t.Fatal("a first load that does not parse is accepted")
	}
}
