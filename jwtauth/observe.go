package jwtauth

// MethodName returns the label of this method in metrics
// (auth.MethodNamer): its Authentication Method, "JWT" by default, also
// when the token comes in the password.
func (a *Authenticator) MethodName() string { return a.method }
