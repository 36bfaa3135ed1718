package nats

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mqttauth/mqttauth/mqttconn"
)

// ErrUnsupportedServer means the nats-server in use does not hold the MQTT
// client identifier where this package reads it (see the package
// documentation): every client is refused rather than authenticated with
// a wrong identifier.
var ErrUnsupportedServer = errors.New("nats: cannot read the MQTT client identifier from this nats-server version")

// Listener names, the auth.Request.Listener (and auth.Principal.Listener)
// of each kind of connection, so that a policy or an authenticator can
// tell them apart.
const (
	ListenerMQTT      = "mqtt"      // nats-server's MQTT listener (also MQTT over WebSocket)
	ListenerNATS      = "nats"      // native NATS clients
	ListenerWebSocket = "websocket" // native NATS clients over WebSocket
)

// clientInfo is what the ClientAuthentication interface does not say: the
// kind of client connection and the MQTT client identifier.
type clientInfo struct {
	mqtt     bool
	ws       bool
	clientID string // the MQTT client identifier; empty for native clients
}

// Listeners names the listener of each kind of connection: the
// auth.Request.Listener and auth.Principal.Listener, which select a port's
// chain and policy in an aioconfig.Broker (its Port names). Empty fields
// keep ListenerMQTT, ListenerNATS and ListenerWebSocket.
type Listeners struct {
	MQTT, NATS, WebSocket string
}

func (ci clientInfo) listener(l Listeners) string {
	switch {
	case ci.mqtt:
		return cmp.Or(l.MQTT, ListenerMQTT)
	case ci.ws:
		return cmp.Or(l.WebSocket, ListenerWebSocket)
	}
	return cmp.Or(l.NATS, ListenerNATS)
}

// layout is where nats-server keeps the fields, found once per type.
type layout struct {
	typ  reflect.Type
	mqtt []int // client.mqtt, a pointer
	ws   []int // client.ws, a pointer
	cid  []int // mqtt.cid, a string
	err  error
}

var cached atomic.Pointer[layout]

func layoutOf(t reflect.Type) *layout {
	if l := cached.Load(); l != nil && l.typ == t {
		return l
	}
	l := &layout{typ: t}
	defer cached.Store(l)
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		l.err = fmt.Errorf("%w: the client is a %v", ErrUnsupportedServer, t)
		return l
	}
	st := t.Elem()
	mf, ok := st.FieldByName("mqtt")
	if !ok || mf.Type.Kind() != reflect.Pointer || mf.Type.Elem().Kind() != reflect.Struct {
		l.err = fmt.Errorf("%w: %v has no mqtt field", ErrUnsupportedServer, st)
		return l
	}
	cf, ok := mf.Type.Elem().FieldByName("cid")
	if !ok || cf.Type.Kind() != reflect.String {
		l.err = fmt.Errorf("%w: %v has no cid string", ErrUnsupportedServer, mf.Type.Elem())
		return l
	}
	wf, ok := st.FieldByName("ws")
	if !ok || wf.Type.Kind() != reflect.Pointer {
		l.err = fmt.Errorf("%w: %v has no ws field", ErrUnsupportedServer, st)
		return l
	}
	l.mqtt, l.cid, l.ws = mf.Index, cf.Index, wf.Index
	return l
}

// inspect reads the connection kind and the MQTT client identifier of c.
// nats-server sets them before it authenticates the client, on the
// goroutine that calls Check, and keeps them in unexported fields of its
// client type, read here by reflection (never written). Should a later
// nats-server move them, inspect fails and the client is refused.
func inspect(c server.ClientAuthentication) (clientInfo, error) {
	v := reflect.ValueOf(c)
	l := layoutOf(v.Type())
	if l.err != nil {
		return clientInfo{}, l.err
	}
	if v.IsNil() {
		return clientInfo{}, fmt.Errorf("%w: nil client", ErrUnsupportedServer)
	}
	e := v.Elem()
	var ci clientInfo
	if m := e.FieldByIndex(l.mqtt); !m.IsNil() {
		ci.mqtt = true
		ci.clientID = m.Elem().FieldByIndex(l.cid).String()
	}
	ci.ws = !e.FieldByIndex(l.ws).IsNil()
	return ci, nil
}

// connectOf returns the CONNECT of a client as nats-server parsed it:
// MQTT clients give their client identifier, user name and password
// (protocol version 4: nats-server speaks MQTT 3.1.1 only); native NATS
// clients give their connection name as the client identifier, and a
// token, when they send one instead of a password, as the password
// (protocol version 0: not MQTT). Neither carries an Authentication Method
// or Data. nats-server keeps no password flag: a password is present when
// it is not empty. The Will is not visible here (nats-server keeps it
// until after authentication); its publication is checked by nats-server
// against the permissions given at connect, like any publish.
func connectOf(c server.ClientAuthentication, ci clientInfo) *mqttconn.Connect {
	o := c.GetOpts()
	cp := &mqttconn.Connect{Username: o.Username, HasUsername: o.Username != ""}
	pw := o.Password
	if ci.mqtt {
		cp.ClientID = ci.clientID
		cp.ProtocolVersion = 4
	} else {
		cp.ClientID = o.Name
		if pw == "" {
			pw = o.Token
		}
	}
	if pw != "" {
		cp.Password, cp.HasPassword = []byte(pw), true
	}
	return cp
}
