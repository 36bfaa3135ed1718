package image_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttauth/mqttauth/examples/e2e/proc"
	"github.com/mqttauth/mqttauth/examples/internal/devpki"
	"github.com/mqttauth/mqttauth/examples/internal/tutorial"
)

// deployDir is deploy/ of the repository.
var deployDir = filepath.Join("..", "..", "..", "deploy")

// epoch is the SOURCE_DATE_EPOCH of the test's builds: the image's
// created time and the time of every file in it.
const epoch = 1700000000

// nonroot is the user and group the image runs as, and the manifests'
// runAsUser and runAsGroup.
const nonroot = 65532

// The image, built from a fresh checkout twice, in two storages that
// share nothing, is the same image (ID and manifest digest); it holds the
// static binary, passwd and group, the CA bundle and nothing else; it runs
// as the manifests run it and serves MQTT.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example binaries and images: not in -short mode")
	}
	start := time.Now()
	e1, e2 := newEngine(t), newEngine(t)

	var gateway, broker *ociImage
	ok := t.Run("reproducible", func(t *testing.T) {
		id1 := e1.build(t, "gateway", "mqttauth-gateway:test")
		id2 := e2.build(t, "gateway", "mqttauth-gateway:test")
		require.Equal(t, id1, id2, "two builds, two image IDs")
		gateway = e1.export(t, "mqttauth-gateway:test")
		again := e2.export(t, "mqttauth-gateway:test")
		require.Equal(t, gateway.manifestDigest, again.manifestDigest, "two builds, two manifest digests")
		require.Equal(t, id1, gateway.configDigest, "the image ID is the digest of the configuration")
		t.Logf("gateway image %s, manifest %s", id1, gateway.manifestDigest)
		e1.build(t, "broker", "mqttauth-broker:test")
		broker = e1.export(t, "mqttauth-broker:test")
	})
	if !ok {
		t.FailNow()
	}
	t.Logf("three image builds: %v", time.Since(start).Round(time.Millisecond))

	for name, img := range map[string]*ociImage{"gateway": gateway, "broker": broker} {
		t.Run("contents/"+name, func(t *testing.T) { checkContents(t, name, img) })
	}

	// The development PKI and the tutorial's configuration, as a mounted
	// ConfigMap and Secret would be: read-only, readable by 65532 only
	// (keys are 0600).
	pki := filepath.Join(e1.dir, "pki")
	_, err := tutorial.Ensure(pki, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NoError(t, filepath.WalkDir(pki, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, nonroot, nonroot)
	}))
	pub := proc.RequireTool(t, "mosquitto_pub", "mosquitto-clients")
	mqtt := func(t *testing.T, port, client, topic string) string {
		t.Helper()
		out, err := proc.Run(t, 20*time.Second, pub, "-d", "-V", "mqttv5", "-h", "localhost", "-p", port,
			"--cafile", filepath.Join(pki, devpki.ServerRootCA),
			"--cert", filepath.Join(pki, devpki.CertFile(client)), "--key", filepath.Join(pki, devpki.KeyFile(client)),
			"-i", client, "-q", "1", "-t", topic, "-m", "21.5")
		require.NoError(t, err, out)
		require.Contains(t, out, "received CONNACK (0)")
		return out
	}
	config := "/pki/" + tutorial.FileName

	t.Run("run/broker", func(t *testing.T) {
		addr, admin := proc.FreeAddr(t), proc.FreeAddr(t)
		c := e1.run(t, "broker", "mqttauth-broker:test", pki, "-config", config, "-addr", addr, "-admin-addr", admin)
		waitHTTP(t, "http://"+admin+"/healthz")
		waitHTTP(t, "http://"+admin+"/readyz")
		c.checkConfined(t)
		_, port, _ := net.SplitHostPort(addr)
		require.Contains(t, mqtt(t, port, "thermostat", "telemetry/temperature"), "received PUBACK (Mid: 1, RC:0)")
		require.Contains(t, mqtt(t, port, "thermostat", "telemetry/humidity"), "received PUBACK (Mid: 1, RC:135)")
		c.stop(t)
		logs := c.logs(t)
		require.Contains(t, logs, "broker listening")
		require.Contains(t, logs, "decision=authorize_deny")
		require.NotContains(t, logs, "PRIVATE KEY")
	})

	t.Run("run/gateway", func(t *testing.T) {
		mosq, upstream := proc.StartMosquitto(t, "")
		addr, admin := proc.FreeAddr(t), proc.FreeAddr(t)
		c := e1.run(t, "gateway", "mqttauth-gateway:test", pki, "-config", config, "-addr", addr, "-admin-addr", admin, "-upstream", upstream)
		waitHTTP(t, "http://"+admin+"/healthz")
		waitHTTP(t, "http://"+admin+"/readyz") // the upstream broker is reachable
		c.checkConfined(t)
		_, port, _ := net.SplitHostPort(addr)
		// mosquitto answers 16 (no matching subscribers): the publish got
		// through; the gateway answers 135 to what the policy denies.
		require.Contains(t, mqtt(t, port, "thermostat", "telemetry/temperature"), "received PUBACK (Mid: 1, RC:16)")
		require.Contains(t, mqtt(t, port, "thermostat", "telemetry/humidity"), "received PUBACK (Mid: 1, RC:135)")
		mosq.WaitFor(t, 10*time.Second, "u'thermostat'")
		c.stop(t)
		logs := c.logs(t)
		require.Contains(t, logs, "gateway listening")
		require.Contains(t, logs, "decision=authorize_deny")
	})
	t.Logf("TestImage: %v", time.Since(start).Round(time.Millisecond))
}

// checkContents checks the files and the configuration of the image of
// program name.
func checkContents(t *testing.T, name string, img *ociImage) {
	bin := "usr/local/bin/" + name
	var paths []string
	for p := range img.files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	require.Equal(t, []string{
		"etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt",
		"usr/", "usr/local/", "usr/local/bin/", bin,
	}, paths, "the image holds exactly these files")
	for _, sh := range []string{"bin/sh", "usr/bin/sh", "bin/busybox"} {
		require.NotContains(t, img.files, sh, "a shell in the image")
	}
	for p, h := range img.files {
		require.Zero(t, h.Uid, p)
		require.Zero(t, h.Gid, p)
		require.Equal(t, int64(epoch), h.ModTime.Unix(), "%s: the time of every file is SOURCE_DATE_EPOCH", p)
		mode := int64(0o644)
		if h.Typeflag == tar.TypeDir || p == bin {
			mode = 0o755
		}
		require.Equal(t, mode, h.Mode&0o7777, p)
	}
	require.Contains(t, string(img.contents["etc/passwd"]), fmt.Sprintf("nonroot:x:%d:%d:", nonroot, nonroot))
	require.Contains(t, string(img.contents["etc/group"]), fmt.Sprintf("nonroot:x:%d:", nonroot))
	require.Contains(t, string(img.contents["etc/ssl/certs/ca-certificates.crt"]), "-----BEGIN CERTIFICATE-----")

	f, err := elf.NewFile(bytes.NewReader(img.contents[bin]))
	require.NoError(t, err)
	for _, p := range f.Progs {
		require.NotEqual(t, elf.PT_INTERP, p.Type, "%s has an interpreter: not static", bin)
		require.NotEqual(t, elf.PT_DYNAMIC, p.Type, "%s has a dynamic section: not static", bin)
	}

	c := img.config
	require.Equal(t, time.Unix(epoch, 0).UTC(), c.Created.UTC())
	require.Equal(t, "linux", c.OS)
	require.Equal(t, fmt.Sprintf("%d:%d", nonroot, nonroot), c.Config.User)
	require.Equal(t, []string{"/" + bin}, c.Config.Entrypoint)
	require.Empty(t, c.Config.Cmd)
	require.Contains(t, c.Config.ExposedPorts, "8883/tcp")
	require.Contains(t, c.Config.ExposedPorts, "9090/tcp")
	require.Equal(t, "mqttauth-"+name, c.Config.Labels["org.opencontainers.image.title"])
}

// engine is a buildah and podman storage of the test's own (the vfs
// driver, in a temporary directory), with runc and cgroupfs: what runs
// in this project's sandbox and CI machines, whose cgroups are a hybrid
// v1/v2 hierarchy that crun refuses.
type engine struct {
	dir string
	env []string
}

func newEngine(t *testing.T) *engine {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := "buildah and podman run rootful here: run the test as root"
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and %s", msg)
		}
		t.Skip(msg)
	}
	for _, tool := range []string{"buildah", "podman", "runc"} {
		proc.RequireTool(t, tool, tool)
	}
	// Not t.TempDir: podman's socket paths under it must stay short.
	dir, err := os.MkdirTemp("", "mqttauth-image-")
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing the image storage: %v", err)
		}
	})
	storage := fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "run"))
	containers := fmt.Sprintf("[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\ntmp_dir = %q\nevents_logger = \"file\"\nevents_logfile_path = %q\n",
		filepath.Join(dir, "tmp"), filepath.Join(dir, "events.log"))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "storage.conf"), []byte(storage), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "containers.conf"), []byte(containers), 0o644))
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "SOURCE_DATE_EPOCH=") || strings.HasPrefix(kv, "BUILDER=")
	})
	env = append(env,
		"CONTAINERS_STORAGE_CONF="+filepath.Join(dir, "storage.conf"),
		"CONTAINERS_CONF="+filepath.Join(dir, "containers.conf"),
		"SOURCE_DATE_EPOCH="+strconv.Itoa(epoch),
		"BUILDAH_ISOLATION=chroot")
	return &engine{dir: dir, env: env}
}

// command runs a program with the engine's environment, at most d, and
// returns its combined output; a failure fails the test.
func (e *engine) command(t *testing.T, d time.Duration, path string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = e.env
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", path, strings.Join(args, " "), out)
	return string(out)
}

// build runs deploy/build-image.sh and returns the image ID. (The first
// build may compile everything: CI's other builds are with -race.)
func (e *engine) build(t *testing.T, target, tag string) string {
	t.Helper()
	iid := filepath.Join(e.dir, "iid")
	e.command(t, 10*time.Minute, filepath.Join(deployDir, "build-image.sh"), target, tag, "--iidfile", iid)
	id, err := os.ReadFile(iid)
	require.NoError(t, err)
	return strings.TrimSpace(string(id))
}

// ociImage is an image as buildah pushes it to an OCI layout.
type ociImage struct {
	manifestDigest, configDigest string
	config                       struct {
		Created time.Time `json:"created"`
		OS      string    `json:"os"`
		Config  struct {
			User         string              `json:"User"`
			Entrypoint   []string            `json:"Entrypoint"`
			Cmd          []string            `json:"Cmd"`
			ExposedPorts map[string]struct{} `json:"ExposedPorts"`
			Labels       map[string]string   `json:"Labels"`
		} `json:"config"`
	}
	files    map[string]*tar.Header // by path, of every layer
	contents map[string][]byte      // of the regular files
}

// export pushes the image tag to an OCI layout and reads it.
func (e *engine) export(t *testing.T, tag string) *ociImage {
	t.Helper()
	dir, err := os.MkdirTemp(e.dir, "oci-")
	require.NoError(t, err)
	e.command(t, time.Minute, "buildah", "push", "--quiet", tag, "oci:"+dir+":"+tag)
	blob := func(digest string) []byte {
		hexDigest, ok := strings.CutPrefix(digest, "sha256:")
		require.True(t, ok, digest)
		b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", hexDigest))
		require.NoError(t, err)
		sum := sha256.Sum256(b)
		require.Equal(t, hexDigest, hex.EncodeToString(sum[:]), "blob %s", digest)
		return b
	}
	var index struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &index))
	require.Len(t, index.Manifests, 1)
	var manifest struct {
		Config struct {
			Digest string `json:"digest"`
		} `json:"config"`
		Layers []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		} `json:"layers"`
	}
	img := &ociImage{manifestDigest: index.Manifests[0].Digest, files: map[string]*tar.Header{}, contents: map[string][]byte{}}
	require.NoError(t, json.Unmarshal(blob(img.manifestDigest), &manifest))
	img.configDigest = manifest.Config.Digest
	require.NoError(t, json.Unmarshal(blob(img.configDigest), &img.config))
	require.NotEmpty(t, manifest.Layers)
	for _, l := range manifest.Layers {
		require.Equal(t, "application/vnd.oci.image.layer.v1.tar+gzip", l.MediaType)
		zr, err := gzip.NewReader(bytes.NewReader(blob(l.Digest)))
		require.NoError(t, err)
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			p := strings.TrimPrefix(h.Name, "./")
			img.files[p] = h
			if h.Typeflag == tar.TypeReg {
				img.contents[p], err = io.ReadAll(tr)
				require.NoError(t, err)
			}
		}
	}
	return img
}

// container is a container the test started.
type container struct {
	e    *engine
	name string
}

// run starts image as the manifests under deploy/kubernetes run it:
// user 65532, read-only root filesystem without tmpfs mounts, no
// capabilities, no privilege escalation; the host's network (loopback),
// and pki mounted read-only at /pki. The ulimits are the sandbox's: it
// cannot raise them to podman's defaults.
func (e *engine) run(t *testing.T, name, image, pki string, args ...string) *container {
	t.Helper()
	c := &container{e: e, name: name}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("podman logs %s:\n%s", name, c.logs(t))
		}
		e.command(t, time.Minute, "podman", "rm", "--force", "--time", "5", name)
	})
	e.command(t, time.Minute, "podman", append([]string{"run", "--detach", "--name", name,
		"--read-only", "--read-only-tmpfs=false", "--user", fmt.Sprintf("%d:%d", nonroot, nonroot),
		"--cap-drop", "ALL", "--security-opt", "no-new-privileges",
		"--network", "host", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
		"--volume", pki + ":/pki:ro", image}, args...)...)
	return c
}

// logs returns the container's output.
func (c *container) logs(t *testing.T) string {
	t.Helper()
	return c.e.command(t, time.Minute, "podman", "logs", c.name)
}

// stop sends SIGTERM and checks that the program exits with 0.
func (c *container) stop(t *testing.T) {
	t.Helper()
	c.e.command(t, time.Minute, "podman", "stop", "--time", "10", c.name)
	code := c.e.command(t, time.Minute, "podman", "inspect", "--format", "{{.State.ExitCode}}", c.name)
	require.Equal(t, "0", strings.TrimSpace(code), "exit code after SIGTERM")
}

// checkConfined reads the container's process from the host's /proc: user
// and group 65532, no capability, no_new_privs, and a read-only root with
// nothing writable mounted below it but /proc, /sys and /dev.
func (c *container) checkConfined(t *testing.T) {
	t.Helper()
	pid := strings.TrimSpace(c.e.command(t, time.Minute, "podman", "inspect", "--format", "{{.State.Pid}}", c.name))
	status, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	require.NoError(t, err)
	fields := map[string]string{}
	for line := range strings.Lines(string(status)) {
		k, v, _ := strings.Cut(line, ":")
		fields[k] = strings.Join(strings.Fields(v), " ")
	}
	id := strconv.Itoa(nonroot)
	require.Equal(t, strings.Repeat(id+" ", 3)+id, fields["Uid"])
	require.Equal(t, strings.Repeat(id+" ", 3)+id, fields["Gid"])
	for _, capSet := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		require.Equal(t, "0000000000000000", fields[capSet], capSet)
	}
	require.Equal(t, "1", fields["NoNewPrivs"])

	mountinfo, err := os.Open(filepath.Join("/proc", pid, "mountinfo"))
	require.NoError(t, err)
	defer mountinfo.Close()
	var rootSeen bool
	sc := bufio.NewScanner(mountinfo)
	for sc.Scan() {
		// ID parent major:minor root mountpoint options ...
		f := strings.Fields(sc.Text())
		require.GreaterOrEqual(t, len(f), 6, sc.Text())
		point, opts := f[4], strings.Split(f[5], ",")
		if point == "/" {
			rootSeen = true
			require.Contains(t, opts, "ro", "the root filesystem is read-only: %s", sc.Text())
			continue
		}
		if slices.Contains(opts, "rw") && point != "/proc" && point != "/dev" && !strings.HasPrefix(point, "/dev/") &&
			!strings.HasPrefix(point, "/proc/") && !strings.HasPrefix(point, "/sys") {
			t.Errorf("writable mount in the container: %s", sc.Text())
		}
	}
	require.NoError(t, sc.Err())
	require.True(t, rootSeen)
}

// waitHTTP waits up to 30 s for url to answer 200.
func waitHTTP(t *testing.T, url string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v after 30 s", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
