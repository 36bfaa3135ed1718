package satauth

import (
	"context"
	"net/url"
	"time"

	"github.com/mqttauth/mqttauth/internal/kubeapi"
)

// The list and watch calls ask for metadata only (PartialObjectMetadata):
// names, UIDs and annotations are all the watch needs, and a pod's spec and
// status would cost the broker memory and the API server bandwidth. The
// list+watch loop itself is package internal/kubeapi's Follow, shared with
// aioconfig's Kubernetes source.

// objectMeta is the part of an object's metadata the watch reads.
type objectMeta = kubeapi.ObjectMeta

// collection is the path of resource ("serviceaccounts" or "pods") in ns.
func collection(ns, resource string) string {
	return "/api/v1/namespaces/" + url.PathEscape(ns) + "/" + resource
}

// list calls fn for every object of resource in namespace ns, page by
// page, and returns the list's resourceVersion, from which a watch
// continues.
func (c *kubeClient) list(ctx context.Context, ns, resource string, fn func(objectMeta)) (rv string, err error) {
	op := "list " + resource // opListServiceAccounts, opListPods: observed as the watch's calls
	defer c.observe(op, time.Now(), &err)
	return c.List(ctx, op, collection(ns, resource), kubeapi.AcceptMetaList, func(o kubeapi.Object) { fn(o.Meta) })
}
