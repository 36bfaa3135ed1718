package mochi

import (
	"fmt"
	"reflect"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// checkOthers returns an error wrapping ErrOtherAuthHook when a hook other
// than h, among those attached to the server and those srv.Serve will add
// from srv.Options.Hooks, provides OnConnectAuthenticate or OnACLCheck.
func (h *Hook) checkOthers() error {
	if h.allowOthers {
		return nil
	}
	hooks, ok := serverHooks(h.srv)
	if !ok {
		// A mochi release whose Server no longer has the field: say so
		// rather than silently skipping the check.
		return fmt.Errorf("%w: cannot list the server's hooks (mochi changed?); set Config.InsecureAllowOtherAuthHooks to run anyway", ErrOtherAuthHook)
	}
	for _, lc := range h.srv.Options.Hooks {
		hooks = append(hooks, lc.Hook)
	}
	for _, o := range hooks {
		if o == nil || o == mqtt.Hook(h) {
			continue
		}
		if o.Provides(mqtt.OnConnectAuthenticate) || o.Provides(mqtt.OnACLCheck) {
			return fmt.Errorf("%w: hook %q", ErrOtherAuthHook, o.ID())
		}
	}
	return nil
}

var hooksType = reflect.TypeFor[*mqtt.Hooks]()

// serverHooks lists the hooks attached to srv. mochi v2 keeps them in the
// unexported field Server.hooks and offers no accessor, so the field is read
// through reflection (read only: GetAll takes a snapshot).
func serverHooks(srv *mqtt.Server) ([]mqtt.Hook, bool) {
	f := reflect.ValueOf(srv).Elem().FieldByName("hooks")
	if !f.IsValid() || f.Type() != hooksType || f.IsNil() {
		return nil, false
	}
	hs := (*mqtt.Hooks)(f.UnsafePointer())
	return append([]mqtt.Hook(nil), hs.GetAll()...), true
}
