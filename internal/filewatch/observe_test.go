package filewatch_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/auth"
	"github.com/mqttauth/mqttauth/internal/filewatch"
)

type reloads struct {
	auth.NopObserver
	mu  sync.Mutex
	got []auth.ComponentEvent
}

func (r *reloads) Component(ev auth.ComponentEvent) {
	r.mu.Lock()
	r.got = append(r.got, ev)
	r.mu.Unlock()
}

func TestFileObserver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n.txt")
	require.NoError(t, os.WriteFile(path, []byte("1"), 0o600))
	obs := &reloads{}
	f, err := filewatch.NewFile(filewatch.FileConfig[int]{
		Path:      path,
		Debounce:  time.Hour, // only the test's Reload calls load the file
		Parse:     func(b []byte, _ uint64) (int, error) { return strconv.Atoi(strings.TrimSpace(string(b))) },
		Logger:    slog.New(slog.DiscardHandler),
		Observer:  obs,
		Component: auth.ComponentPolicy,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	require.NoError(t, os.WriteFile(path, []byte("x"), 0o600))
	require.Error(t, f.Reload())
	require.NoError(t, os.WriteFile(path, []byte("2"), 0o600))
	require.NoError(t, f.Reload())
	require.NoError(t, f.Reload(), "unchanged content is no reload")
	obs.mu.Lock()
	defer obs.mu.Unlock()
	require.Equal(t, []auth.ComponentEvent{
		{Component: auth.ComponentPolicy, Kind: auth.Reload},
		{Component: auth.ComponentPolicy, Kind: auth.ReloadFailed},
		{Component: auth.ComponentPolicy, Kind: auth.Reload},
	}, obs.got)
}
