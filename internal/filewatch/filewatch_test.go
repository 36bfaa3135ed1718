package filewatch_test

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttauth/mqttauth/internal/filewatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	debounce = 20 * time.Millisecond
	waitFor  = 5 * time.Second
	quiet    = 10 * debounce // long enough for an unwanted Reload to show
)

// recorder counts Reload calls and reports each on a channel.
type recorder struct {
	n     atomic.Int64
	calls chan time.Time
	hook  func() // runs inside Reload when set
}

func newRecorder() *recorder { return &recorder{calls: make(chan time.Time, 100)} }

func (r *recorder) reload() {
	if r.hook != nil {
		r.hook()
	}
	r.n.Add(1)
	r.calls <- time.Now()
}

func (r *recorder) wait(t *testing.T, what string) time.Time {
	t.Helper()
	select {
	case at := <-r.calls:
		return at
	case <-time.After(waitFor):
		t.Fatalf("no Reload after %s", what)
		return time.Time{}
	}
}

func (r *recorder) none(t *testing.T, what string) {
	t.Helper()
	select {
	case <-r.calls:
		t.Fatalf("Reload after %s", what)
	case <-time.After(quiet):
	}
}

func watch(t *testing.T, r *recorder, d time.Duration, paths ...string) *filewatch.Watcher {
	t.Helper()
	w, err := filewatch.New(filewatch.Config{Paths: paths, Debounce: d, Reload: r.reload})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, w.Close()) })
	return w
}

func write(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
}

// writeRename writes a temporary file next to path and renames it over
// path, as editors and the scramuser command do.
func writeRename(t *testing.T, path, content string) {
	t.Helper()
	write(t, path+".tmp", content)
	require.NoError(t, os.Rename(path+".tmp", path))
}

func TestFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.json")
	write(t, path, "1")
	r := newRecorder()
	watch(t, r, debounce, path)

	write(t, path, "2") // in place
	r.wait(t, "a write in place")
	writeRename(t, path, "3")
	r.wait(t, "a rename over the file")
	r.none(t, "one rename") // the temporary file's own events do not count

	write(t, filepath.Join(dir, "other.json"), "x")
	require.NoError(t, os.Remove(filepath.Join(dir, "other.json")))
	r.none(t, "a change to another file in the directory")

	require.NoError(t, os.Remove(path))
	r.wait(t, "the file was removed")
	write(t, path, "4")
	r.wait(t, "the file was created again")
}

func TestSymlinkToSibling(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "ca-2026.pem"), "1")
	require.NoError(t, os.Symlink("ca-2026.pem", filepath.Join(dir, "ca.pem")))
	r := newRecorder()
	watch(t, r, debounce, filepath.Join(dir, "ca.pem"))
	write(t, filepath.Join(dir, "ca-2026.pem"), "2")
	r.wait(t, "a write to the target of the link")
}

func TestRelativePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	write(t, "policy.yaml", "1")
	r := newRecorder()
	watch(t, r, debounce, "policy.yaml")
	writeRename(t, "policy.yaml", "2")
	r.wait(t, "a rename over a relative path")
}

// kubeVolume lays out a mounted ConfigMap or Secret as the kubelet's atomic
// writer does: name -> ..data/name, ..data -> ..<version>.
type kubeVolume struct {
	t    *testing.T
	dir  string
	name string
	n    int
}

func (v *kubeVolume) update(content string) {
	t := v.t
	v.n++
	version := filepath.Join(v.dir, "..2026_01_01_"+string(rune('a'+v.n)))
	require.NoError(t, os.Mkdir(version, 0o700))
	write(t, filepath.Join(version, v.name), content)
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	require.NoError(t, os.Symlink(filepath.Base(version), filepath.Join(v.dir, "..data_tmp")))
	require.NoError(t, os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")))
	if old != "" {
		require.NoError(t, os.RemoveAll(filepath.Join(v.dir, old)))
	}
	if v.n == 1 {
		require.NoError(t, os.Symlink(filepath.Join("..data", v.name), filepath.Join(v.dir, v.name)))
	}
}

func TestKubernetesDataSwap(t *testing.T) {
	for _, watchDir := range []bool{false, true} {
		name := "file"
		if watchDir {
			name = "directory"
		}
		t.Run(name, func(t *testing.T) {
			v := &kubeVolume{t: t, dir: t.TempDir(), name: "client_ca.pem"}
			v.update("1")
			path := filepath.Join(v.dir, v.name)
			if watchDir {
				path = v.dir
			}
			r := newRecorder()
			watch(t, r, debounce, path)
			v.update("2")
			r.wait(t, "a ..data swap")
			r.none(t, "one swap") // its several events make one Reload
			got, err := os.ReadFile(filepath.Join(v.dir, v.name))
			require.NoError(t, err)
			require.Equal(t, "2", string(got))
		})
	}
}

func TestDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.pem"), "a")
	r := newRecorder()
	watch(t, r, debounce, dir)
	write(t, filepath.Join(dir, "b.pem"), "b")
	r.wait(t, "a new file in a watched directory")
	require.NoError(t, os.Remove(filepath.Join(dir, "a.pem")))
	r.wait(t, "a file removed from a watched directory")
	require.NoError(t, os.RemoveAll(dir))
	r.wait(t, "the watched directory was removed")
}

func TestSeveralPaths(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	a, b := filepath.Join(d1, "a.pem"), filepath.Join(d1, "b.pem")
	write(t, a, "a")
	write(t, b, "b")
	r := newRecorder()
	watch(t, r, debounce, a, b, d2)
	writeRename(t, b, "b2")
	r.wait(t, "a change to the second file of a directory")
	write(t, filepath.Join(d2, "c.pem"), "c")
	r.wait(t, "a change in the second directory")
	write(t, filepath.Join(d1, "c.pem"), "c")
	r.none(t, "a change to an unwatched file")
}

func TestDebounceCoalesces(t *testing.T) {
	const d = 300 * time.Millisecond
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write(t, path, "0")
	r := newRecorder()
	watch(t, r, d, path)
	var last time.Time
	for i := range 10 {
		// Taken before the write: its event comes after, so the Reload
		// comes at least d after it (a time taken after the write may be
		// later than the event, by as long as the machine is busy).
		last = time.Now()
		write(t, path, string(rune('a'+i)))
		time.Sleep(time.Millisecond)
	}
	at := r.wait(t, "a burst of writes")
	require.GreaterOrEqual(t, at.Sub(last), d, "Reload before the events were quiet")
	select {
	case <-r.calls:
		t.Fatal("a burst made more than one Reload")
	case <-time.After(3 * d):
	}
	require.EqualValues(t, 1, r.n.Load())
}

func TestEventsDuringReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	write(t, path, "1")
	r := newRecorder()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r.hook = func() {
		once.Do(func() {
			close(entered)
			<-release
		})
	}
	watch(t, r, debounce, path)
	write(t, path, "2")
	<-entered
	write(t, path, "3") // while the first Reload runs
	close(release)
	r.wait(t, "the first write")
	r.wait(t, "a write during a Reload")
}

func TestClose(t *testing.T) {
	t.Run("waits_for_a_running_reload", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "policy.yaml")
		write(t, path, "1")
		r := newRecorder()
		entered, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		r.hook = func() { once.Do(func() { close(entered); <-release }) }
		w, err := filewatch.New(filewatch.Config{Paths: []string{path}, Debounce: debounce, Reload: r.reload})
		require.NoError(t, err)
		write(t, path, "2")
		<-entered

		closed := make(chan error)
		go func() { closed <- w.Close() }()
		select {
		case <-closed:
			t.Fatal("Close returned while Reload ran")
		case <-time.After(quiet):
		}
		close(release)
		select {
		case err := <-closed:
			require.NoError(t, err)
		case <-time.After(waitFor):
			t.Fatal("Close did not return")
		}
		n := r.n.Load()
		require.EqualValues(t, 1, n)
		write(t, path, "3")
		time.Sleep(quiet)
		require.Equal(t, n, r.n.Load(), "Reload after Close returned")
		require.NoError(t, w.Close(), "a second Close")
		goleak.VerifyNone(t)
	})
	t.Run("pending_reload_is_dropped", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "policy.yaml")
		write(t, path, "1")
		r := newRecorder()
		// A Debounce no test reaches: the Reload stays pending however
		// late Close comes.
		w, err := filewatch.New(filewatch.Config{Paths: []string{path}, Debounce: time.Hour, Reload: r.reload})
		require.NoError(t, err)
		write(t, path, "2")
		time.Sleep(debounce) // the event is in, the Reload pending
		require.NoError(t, w.Close())
		time.Sleep(2 * quiet)
		require.Zero(t, r.n.Load())
		goleak.VerifyNone(t)
	})
	t.Run("concurrent", func(t *testing.T) {
		r := newRecorder()
		w, err := filewatch.New(filewatch.Config{Paths: []string{t.TempDir()}, Reload: r.reload})
		require.NoError(t, err)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() { _ = w.Close() })
		}
		wg.Wait()
		goleak.VerifyNone(t)
	})
}

func TestNewErrors(t *testing.T) {
	r := newRecorder()
	_, err := filewatch.New(filewatch.Config{Reload: r.reload})
	require.Error(t, err)
	_, err = filewatch.New(filewatch.Config{Paths: []string{t.TempDir()}})
	require.Error(t, err)
	missing := filepath.Join(t.TempDir(), "missing", "users.json")
	_, err = filewatch.New(filewatch.Config{Paths: []string{missing}, Reload: r.reload})
	require.ErrorContains(t, err, filepath.Dir(missing))
	goleak.VerifyNone(t)
}
