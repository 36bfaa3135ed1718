package aioconfig

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/mqttauth/mqttauth/internal/filewatch"
)

// FilesConfig configures [WatchFiles].
type FilesConfig struct {
	// Logger receives a record per change applied or refused; nil means
	// slog.Default().
	Logger *slog.Logger
	// Debounce is the quiet time after a change of the files before they
	// are loaded again; zero means 100 ms.
	Debounce time.Duration
	// Edit, when set, changes each version loaded before it is applied
	// (ClusterConfig.Edit): a program's flag that overrides an address.
	Edit func(*Config) error
}

// FileWatch follows configuration files for a Broker; see [WatchFiles].
type FileWatch struct {
	w   *filewatch.Watcher
	b   *Broker
	log *slog.Logger
	cfg FilesConfig
	// paths are the files as given to Load.
	paths []string
}

// WatchFiles follows the configuration files paths (as given to [Load])
// of b: after each change it loads them again and puts them in force
// through [Broker.Apply], the reload path of the Kubernetes source, so
// that ports, BrokerAuthentications and BrokerAuthorizations written in
// files change live as they do from the API. A version that does not load
// or build keeps the last good configuration and is logged at Error with
// its kind, name and field; a changed MqttAuthSettings is logged at Warn
// as needing a restart. Close it before the Broker.
func WatchFiles(b *Broker, paths []string, cfg FilesConfig) (*FileWatch, error) {
	fw := &FileWatch{b: b, log: cfg.Logger, cfg: cfg, paths: paths}
	if fw.log == nil {
		fw.log = slog.Default()
	}
	abs := make([]string, len(paths))
	for i, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("aioconfig: %w", err)
		}
		abs[i] = a
	}
	w, err := filewatch.New(filewatch.Config{Paths: abs, Debounce: cfg.Debounce, Reload: func() { _ = fw.Reload(context.Background()) }})
	if err != nil {
		return nil, fmt.Errorf("aioconfig: %w", err)
	}
	fw.w = w
	return fw, nil
}

// Reload loads the files now and applies them (what a change of them
// does), returning what changed.
func (fw *FileWatch) Reload(ctx context.Context) error {
	c, err := Load(fw.paths...)
	if err == nil && fw.cfg.Edit != nil {
		if err = fw.cfg.Edit(c); err != nil {
			err = fmt.Errorf("aioconfig: %w", err)
		}
	}
	var ch Changes
	if err == nil {
		ch, err = fw.b.Apply(ctx, c)
	}
	if err != nil {
		fw.log.LogAttrs(ctx, slog.LevelError, "aioconfig: invalid configuration in the files; keeping the last good one", errAttrs(err)...)
		return err
	}
	if len(ch.RestartRequired) > 0 {
		fw.log.LogAttrs(ctx, slog.LevelWarn, "aioconfig: MqttAuthSettings changed; restart to apply it", slog.Any("files", fw.paths))
	}
	if ch.Any() {
		fw.log.LogAttrs(ctx, slog.LevelInfo, "aioconfig: configuration applied", slog.Any("files", fw.paths),
			slog.Any("ports_added", ch.Added), slog.Any("ports_removed", ch.Removed), slog.Any("ports_changed", ch.Changed),
			slog.Any("authentications_rebuilt", ch.Authentications), slog.Any("policies", ch.Policies))
	}
	return nil
}

// Close stops following the files.
func (fw *FileWatch) Close() error { return fw.w.Close() }
