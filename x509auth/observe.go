package x509auth

// MethodName returns the label of this method in metrics (auth.MethodNamer).
func (a *Authenticator) MethodName() string { return Method }
