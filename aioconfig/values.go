package aioconfig

import "fmt"

// checkValues checks, in a Config built or changed in Go, the values that
// Parse checks while it decodes a document: durations ("10s"), modes and
// bounds. Durations are strings in these types, as in the resources, so
// that Go code says what a file says; this check is why [Build] never
// reads one it cannot parse (a typo such as "10 s" is refused with the
// field's path, not read as zero, the default).
func (c *Config) checkValues() []error {
	var errs []error
	for _, a := range c.Authentications {
		d := docRef{source: a.Source, kind: KindAuthentication, name: a.Name}
		for i, m := range a.Methods {
			at := fmt.Sprintf("spec.authenticationMethods[%d].%s", i, settingsField(m.Method, a.API))
			if cs := m.Custom; cs != nil {
				if err := checkDuration(cs.Timeout); err != nil {
					errs = append(errs, d.err(at+".timeout", cs.Timeout, err, "a Go duration: 10s"))
				}
				if cb := cs.CircuitBreaker; cb != nil {
					if err := checkDuration(cb.Cooldown); err != nil {
						errs = append(errs, d.err(at+".circuitBreaker.cooldown", cb.Cooldown, err, "a Go duration: 30s"))
					}
				}
			}
			if m.SAT != nil {
				if f, v, err := checkSAT(m.SAT); err != nil {
					errs = append(errs, d.err(at+"."+f, v, err, satHints[f]))
				}
			}
			if m.X509 != nil && m.X509.Revocation != nil {
				if f, v, err := checkRevocation(m.X509.Revocation); err != nil {
					errs = append(errs, d.err(at+".revocation."+f, v, err, revocationHints[f]))
				}
			}
			if m.JWT != nil {
				if f, v, err := checkJWT(m.JWT); err != nil {
					errs = append(errs, d.err(at+"."+f, v, err, jwtHints[f]))
				}
			}
		}
	}
	if err := checkSettings(&c.Settings, docRef{source: KindSettings, kind: KindSettings}, "spec."); err != nil {
		errs = append(errs, err)
	}
	return errs
}
