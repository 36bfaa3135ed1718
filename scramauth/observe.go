package scramauth

// MethodName returns the label of this method in metrics (auth.MethodNamer).
func (a *Authenticator) MethodName() string { return "SCRAM" }
