// Package kubeapi is the small Kubernetes REST client the packages of this
// module share (satauth, aioconfig): net/http and encoding/json against the
// API server, with the broker's own token re-read when the kubelet rotates
// it, bounded answers, paged lists, watch streams, the list+watch loop that
// resumes after a watch ends, a 410 Gone or an API server restart,
// SelfSubjectAccessReview and Events. It is not a general client: no
// discovery, no informers, no generated types; callers decode the objects
// they need.
//
// Errors keep the caller's vocabulary: Config.Unavailable is the sentinel
// that transport failures wrap and Config.APIError makes the error of an
// unexpected status, so that satauth's errors stay satauth's.
//
//	c, err := kubeapi.New(kubeapi.Config{Name: "aioconfig", Unavailable: ErrUnavailable, APIError: newAPIError})
//	f := kubeapi.Follow{Client: c, Op: "watch configmaps", Path: "/api/v1/namespaces/ns/configmaps",
//		Relist: relist, Event: event}
//	go f.Run(ctx)
package kubeapi
