package clustersrc

import (
	"context"
	"flag"
	"log/slog"

	"github.com/mqttauth/mqttauth/aioconfig"
	"github.com/mqttauth/mqttauth/examples/internal/tutorial"
)

// Source is the flags' values and, once loaded, the Kubernetes source.
type Source struct {
	namespace, apiServer, caFile, tokenFile, version string

	cluster *aioconfig.Cluster
}

// Flags registers the flags on fs.
func Flags(fs *flag.FlagSet) *Source {
	s := &Source{}
	fs.StringVar(&s.namespace, "config-from-cluster", "", "read BrokerListener, BrokerAuthentication and BrokerAuthorization resources (and the ConfigMaps and Secrets they name) from this Kubernetes namespace, and follow their changes; -config files are read with them (MqttAuthSettings)")
	fs.StringVar(&s.apiServer, "kube-apiserver", "", "with -config-from-cluster: the API server's https:// URL (default: in-cluster, the pod's service account)")
	fs.StringVar(&s.caFile, "kube-ca", "", "with -kube-apiserver: the PEM CA of the API server")
	fs.StringVar(&s.tokenFile, "kube-token", "", "with -kube-apiserver: the file of the bearer token (re-read when it changes)")
	fs.StringVar(&s.version, "cluster-api-version", "v1", "with -config-from-cluster: the version the resources are read in (v1 or v1beta1)")
	return s
}

// Enabled reports whether -config-from-cluster was given.
func (s *Source) Enabled() bool { return s.namespace != "" }

// Load reads the configuration from the cluster, with files (may be
// empty); edit, when set, changes every configuration read
// (aioconfig.ClusterConfig.Edit: the -addr flag).
func (s *Source) Load(ctx context.Context, files []string, log *slog.Logger, edit func(*aioconfig.Config) error) (*aioconfig.Config, error) {
	k, err := aioconfig.NewCluster(ctx, aioconfig.ClusterConfig{
		Namespace: s.namespace, Version: s.version,
		APIServer: s.apiServer, CAFile: s.caFile, TokenFile: s.tokenFile,
		Files: files, Logger: log, Edit: edit,
	})
	if err != nil {
		return nil, err
	}
	s.cluster = k
	return k.Config(), nil
}

// Build builds the Broker: from the cluster, following its changes, when
// Load ran; else aioconfig.Build of cfg.
func (s *Source) Build(ctx context.Context, cfg *aioconfig.Config, opts aioconfig.Options) (*aioconfig.Broker, error) {
	if s.cluster == nil {
		return aioconfig.Build(ctx, cfg, opts)
	}
	return s.cluster.Build(ctx, opts)
}

// Close stops following the cluster (after the Broker's Close).
func (s *Source) Close() {
	if s.cluster != nil {
		s.cluster.Close()
	}
}

// Name names the source for messages: ["namespace NS"], or none.
func (s *Source) Name() []string {
	if !s.Enabled() {
		return nil
	}
	return []string{"namespace " + s.namespace}
}

// Config reads the configuration: from the cluster (with files) when
// -config-from-cluster was given, else from files (aioconfig.Load). A
// non-empty addr (the -addr flag) moves the configuration's only port
// there (tutorial.OverrideAddr) and, from the cluster, keeps that port
// there in every later version (tutorial.FollowAddr). Close stops
// following the cluster.
func (s *Source) Config(ctx context.Context, files []string, addr string, log *slog.Logger) (*aioconfig.Config, error) {
	if s.Enabled() {
		var edit func(*aioconfig.Config) error
		if addr != "" {
			edit = tutorial.FollowAddr(addr)
		}
		return s.Load(ctx, files, log, edit)
	}
	cfg, err := aioconfig.Load(files...)
	if err == nil && addr != "" {
		err = tutorial.OverrideAddr(cfg, addr)
	}
	return cfg, err
}

// FollowFiles follows the -config files as the cluster source follows the
// cluster: every change through b.Apply, the one reload path (ports,
// methods and policies live), with addr (the -addr flag, when not empty)
// kept on the port it named (tutorial.FollowAddr). With
// -config-from-cluster the cluster source already follows the files it
// read, so it does nothing. The returned function stops following.
func (s *Source) FollowFiles(b *aioconfig.Broker, files []string, addr string, log *slog.Logger) (stop func(), err error) {
	if s.Enabled() {
		return func() {}, nil
	}
	var edit func(*aioconfig.Config) error
	if addr != "" {
		edit = tutorial.FollowAddr(addr)
	}
	fw, err := aioconfig.WatchFiles(b, files, aioconfig.FilesConfig{Logger: log, Edit: edit})
	if err != nil {
		return nil, err
	}
	return func() { _ = fw.Close() }, nil
}
