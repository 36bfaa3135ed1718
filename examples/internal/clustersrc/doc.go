// Package clustersrc gives the example programs their -config-from-cluster
// flags: the configuration read from the Kubernetes API (package aioconfig's
// Cluster) instead of files, with the flags that point at an API server
// outside a cluster.
//
//	cluster := clustersrc.Flags(fs)
//	fs.Parse(args)
//	if cluster.Enabled() {
//		cfg, err = cluster.Load(ctx, files, log) // defer cluster.Close()
//	}
//	b, err := cluster.Build(ctx, cfg, opts) // aioconfig.Build without the flag
package clustersrc
