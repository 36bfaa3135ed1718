package kubeapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"time"
)

// ObjectRef names the object an Event is about.
type ObjectRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	UID        string `json:"uid,omitempty"`
}

// Event is a core/v1 Event to record on an object.
type Event struct {
	// Object is what the event is about.
	Object ObjectRef
	// Type is "Normal" or "Warning".
	Type string
	// Reason is a short CamelCase word ("InvalidConfiguration").
	Reason string
	// Message says what happened (at most 1024 bytes are sent).
	Message string
	// Component names the reporter ("mqttauth").
	Component string
}

// OpCreateEvent names the Event call in errors.
const OpCreateEvent = "create events"

// CreateEvent records ev in the object's namespace (core/v1 Events, which
// `kubectl describe` shows with the object).
func (c *Client) CreateEvent(ctx context.Context, ev Event) error {
	suffix := make([]byte, 8)
	_, _ = rand.Read(suffix)
	now := time.Now().UTC().Format(time.RFC3339)
	body := map[string]any{
		"apiVersion": "v1", "kind": "Event",
		"metadata":       map[string]any{"name": ev.Object.Name + "." + hex.EncodeToString(suffix), "namespace": ev.Object.Namespace},
		"involvedObject": ev.Object,
		"type":           ev.Type, "reason": ev.Reason, "message": Truncate(ev.Message, 1024),
		"source":         map[string]any{"component": ev.Component},
		"firstTimestamp": now, "lastTimestamp": now, "count": 1,
	}
	path := "/api/v1/namespaces/" + url.PathEscape(ev.Object.Namespace) + "/events"
	return c.Do(ctx, Request{Op: OpCreateEvent, Method: http.MethodPost, Path: path, Body: body}, nil)
}
